"""docs/configuration.md against the code: every environment variable the code (and the
deployment's files) read, and every DMS_PARAMS key with the default the code uses."""

from __future__ import annotations

import re

from dms_orchestration.defs.assets import RETRY_DEFAULTS
from dms_orchestration.engine.file_load import MAX_BAD_ROWS_PARAM
from dms_orchestration.engine.plan import CHUNK_DEFAULTS
from dms_orchestration.ids.provider import BLOCK_PARAM, DEFAULT_BLOCK_SIZE, MODE_PARAM, SEQUENCE
from dms_orchestration.metadata.requests import QUEUE_PARAMS
from dms_orchestration_tests.conftest import REPO_ROOT
from dms_orchestration_tests.test_deploy import DEPLOY, variables_the_code_reads

CONFIGURATION = REPO_ROOT / "docs" / "configuration.md"
_ROW = re.compile(r"^\| `([A-Z0-9_.]+)` \| `([^`]*)` \|", re.MULTILINE)


def params_the_code_reads() -> dict[str, str]:
    """DMS_PARAMS DMSCONFIG keys -> their defaults, as the code has them."""
    defaults = {k: str(v) for k, v in CHUNK_DEFAULTS.items()}
    defaults |= {k: str(default) for k, (default, _least) in QUEUE_PARAMS.items()}
    defaults |= {k: str(v) for k, v in RETRY_DEFAULTS.items()}
    defaults[MAX_BAD_ROWS_PARAM] = "0"
    defaults[MODE_PARAM] = SEQUENCE
    defaults[BLOCK_PARAM] = str(DEFAULT_BLOCK_SIZE)
    return defaults


def test_every_environment_variable_is_documented():
    text = CONFIGURATION.read_text()
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))
    used = variables_the_code_reads()
    for name in ("dagster.yaml", "workspace.yaml"):
        used |= set(re.findall(r"\{env: ([A-Z0-9_]+)\}", (DEPLOY / name).read_text()))
    used |= set(re.findall(r"\$\{([A-Z0-9_]+)\}", "".join(
        p.read_text() for p in (DEPLOY / "systemd").glob("*.service")
    )))  # fmt: skip
    assert used <= named, sorted(used - named)


def test_every_dms_params_key_is_documented_with_the_codes_default():
    documented = dict(_ROW.findall(CONFIGURATION.read_text()))
    wanted = params_the_code_reads()
    assert set(wanted) <= set(documented), sorted(set(wanted) - set(documented))
    wrong = {k: (documented[k], v) for k, v in wanted.items() if documented[k] != v}
    assert not wrong, wrong  # key: (documented, the code's)
