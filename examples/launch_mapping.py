"""Launch a mapping's load through Dagster's GraphQL API, wait for it, print its result.

    .venv/bin/python examples/launch_mapping.py dim_customer_job [--host 127.0.0.1] [--port 3000]

A mapping's job is `<mapref>_job` (`dg list defs` lists them); the UI must be running
(`dms ui`). Exit status 0 when the run succeeded.
"""

import argparse
import sys
import time

import requests
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

# the client launches and polls; the load's counts come from one GraphQL query
MATERIALIZATIONS = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      assetMaterializations {
        assetKey { path }
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
        }
      }
    }
  }
}
"""


def launch_and_wait(client: DagsterGraphQLClient, job: str, poll_s: float = 1.0):
    run_id = client.submit_job_execution(job, tags={"launched-by": "launch_mapping.py"})
    while (status := client.get_run_status(run_id)) not in FINISHED:
        time.sleep(poll_s)
    return run_id, status


def counts(host: str, port: int, run_id: str) -> list[str]:
    """One line per materialized asset: its numeric metadata (rows, seconds, ...)."""
    body = {"query": MATERIALIZATIONS, "variables": {"runId": run_id}}
    reply = requests.post(f"http://{host}:{port}/graphql", json=body, timeout=30).json()
    lines = []
    for event in reply["data"]["runOrError"]["assetMaterializations"]:
        values = [
            f"{e['label']}={e.get('intValue', e.get('floatValue'))}"
            for e in event["metadataEntries"]
            if "intValue" in e or "floatValue" in e
        ]
        lines.append(f"{'/'.join(event['assetKey']['path'])}: {', '.join(values)}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", help="the mapping's job, e.g. dim_customer_job")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    client = DagsterGraphQLClient(args.host, port_number=args.port)
    try:
        run_id, status = launch_and_wait(client, args.job)
    except DagsterGraphQLClientError as exc:
        print(f"error: {': '.join(map(str, exc.args))}", file=sys.stderr)
        return 1
    print(f"run {run_id}: {status.value}")
    for line in counts(args.host, args.port, run_id):
        print(line)
    return 0 if status == DagsterRunStatus.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
