"""Alerts of failed runs: the run-failure sensor `dms_alert_failed_runs` POSTs JSON
(mapping, run id, error, link to the run) to DMS_ALERT_WEBHOOK, a local HTTP server here;
off without the variable; a webhook that fails is retried, then logged, never raised."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from dms_orchestration.db.connect import dispose_all
from dms_orchestration.defs.alerts import AlertNotSent, post_alert
from dms_orchestration.defs.resources import default_resources
from dms_orchestration.defs.sensors import alert_failed_runs
from dms_orchestration_tests.test_defs import cust_dms, execute


class Webhook:
    """A local HTTP server that records each POST and answers `status`."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append(
                    {"path": self.path, "type": self.headers["Content-Type"], "body": body}
                )
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T0KEN"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def cust(dms_url, tmp_path, monkeypatch):
    yield cust_dms(dms_url, tmp_path, monkeypatch)
    dispose_all()


def _failed_run(cust) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
    """A run of the mapping CUST_DIM whose load fails: its source table is gone."""
    cust.sql("DROP TABLE SRC_CUST")
    instance = dg.DagsterInstance.ephemeral()
    result = execute(cust.defs(), "cust_dim_job", instance=instance)
    assert not result.success
    return result, instance


def _evaluate(result, instance) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name="dms_alert_failed_runs",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources=default_resources(),
    ).for_run_failure()
    alert_failed_runs(context)


@pytest.mark.slow
def test_a_failed_run_posts_its_mapping_run_id_error_and_link(cust, webhook, monkeypatch):
    monkeypatch.setenv("DMS_ALERT_WEBHOOK", webhook.url)
    monkeypatch.setenv("DMS_WEBSERVER_URL", "https://dagster.example.com/")
    result, instance = _failed_run(cust)
    _evaluate(result, instance)
    [post] = webhook.posts
    assert post["path"] == "/hooks/T0KEN" and post["type"] == "application/json"
    alert = json.loads(post["body"])
    assert alert["mapping"] == "CUST_DIM" and alert["mappings"] == ["CUST_DIM"]
    assert alert["run_id"] == result.run_id and alert["job"] == "cust_dim_job"
    assert alert["link"] == f"https://dagster.example.com/runs/{result.run_id}"
    assert "SRC_CUST" in alert["error"].upper()  # the load's own error, not "run failed"
    assert alert["status"] == "FAILURE"
    assert alert["text"].startswith("DMS run failed: mapping CUST_DIM, run ")
    assert alert["link"] in alert["text"]


@pytest.mark.slow
def test_no_webhook_set_no_post(cust, webhook, monkeypatch):
    monkeypatch.delenv("DMS_ALERT_WEBHOOK", raising=False)
    result, instance = _failed_run(cust)
    _evaluate(result, instance)
    monkeypatch.setenv("DMS_ALERT_WEBHOOK", "  ")  # empty: off too
    _evaluate(result, instance)
    assert webhook.posts == []


@pytest.mark.slow
def test_the_sensor_is_in_the_code_location_and_can_be_stopped(cust):
    sensor = cust.defs().resolve_sensor_def("dms_alert_failed_runs")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "dms_metadata" in sensor.required_resource_keys


@pytest.mark.slow
def test_a_failing_webhook_is_tried_three_times_then_the_tick_goes_on(cust, webhook, monkeypatch):
    webhook.status = 500
    waits: list[float] = []
    with pytest.raises(AlertNotSent, match=r"http://127\.0\.0\.1 not sent after 3 tries: HTTP 500"):
        post_alert(webhook.url, {"text": "x"}, sleep=waits.append)
    assert len(webhook.posts) == 3 and waits == [1.0, 2.0]
    with pytest.raises(AlertNotSent) as caught:
        post_alert("http://127.0.0.1:1/hooks/T0KEN", {"text": "x"}, sleep=waits.append)
    assert "T0KEN" not in str(caught.value)  # the token in the address is never shown
    # the sensor logs it and does not raise: the DMS logs and later alerts go on
    monkeypatch.setenv("DMS_ALERT_WEBHOOK", webhook.url)
    monkeypatch.setattr("dms_orchestration.defs.alerts.time.sleep", lambda s: None)
    result, instance = _failed_run(cust)
    _evaluate(result, instance)
    assert len(webhook.posts) == 6
