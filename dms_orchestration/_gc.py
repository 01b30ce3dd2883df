"""The code location's first import of ours: what a Dagster process loaded before it
imports the code location (Dagster itself, SQLAlchemy, pydantic) stays loaded as long as
the process, so it leaves the garbage collector's generations (`gc.freeze`); the
collections that importing the rest sets off no longer walk it (~0.13 s less to start a
run worker or `dagster job execute`: benchmarks/README.md). Objects created later are
collected as usual; run workers freeze again once their definitions are built."""

import gc

gc.freeze()
