"""The DMS resource: where the metadata database is (DMS_DATABASE_URL, the legacy DB_TYPE
variables, or the embedded default), for every step, check and sensor."""

import dagster as dg

from dms_orchestration.settings import Settings, load_settings


class DmsResource(dg.ConfigurableResource):
    """database_url overrides the environment; leave it empty in production and set
    DMS_DATABASE_URL where the code server and run workers run."""

    database_url: str | None = None

    def settings(self) -> Settings:
        return load_settings(self.database_url)
