"""The Dagster adapter: assets, checks, jobs, schedules, sensors and resources built from
DMS metadata. Loading it also makes a Dagster CLI end an asset selection it cannot use with
one line instead of a traceback (`cli_errors`)."""

from dms_orchestration.defs.cli_errors import install_selection_error_hook

install_selection_error_hook()
