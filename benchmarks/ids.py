"""Benchmark the ID provider: ids/s and round trips of SEQUENCE and TABLE_COUNTER mode,
one by one and in blocks of 500: `python benchmarks/ids.py [--url URL] [--ids 10000]`."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import sqlalchemy as sa

from dms_orchestration.db.connect import create_engine, dms_schema
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.db.dialects import dialect_of
from dms_orchestration.db.schema import dms_idpool, dms_params
from dms_orchestration.ids.provider import IdProvider, sequence_name

VARIANTS = [
    ("SEQUENCE", 1),
    ("SEQUENCE", 500),
    ("TABLE_COUNTER", 1),
    ("TABLE_COUNTER", 500),
]
# entities of their own, configured by per-entity DMS_PARAMS rows, so that a run against
# a real metadata database (--url) changes neither its settings nor its ids
PREFIX = "BENCH_IDS"


@dataclass
class Result:
    variant: str
    ids: int
    seconds: float
    round_trips: int

    @property
    def rate(self) -> float:
        return self.ids / self.seconds


def entity_of(mode: str, block: int) -> str:
    return f"{PREFIX}_{mode}_{block}"


def configure(engine: sa.Engine, mode: str, block: int) -> None:
    entity = entity_of(mode, block)
    with engine.begin() as conn:
        for prcd, value in (
            (f"ID_GENERATION_MODE.{entity}", mode),
            (f"ID_BLOCK_SIZE.{entity}", str(block)),
        ):
            conn.execute(
                sa.delete(dms_params).where(
                    dms_params.c.prtyp == "DMSCONFIG", dms_params.c.prcd == prcd
                )
            )
            conn.execute(
                sa.insert(dms_params).values(
                    prtyp="DMSCONFIG", prcd=prcd, prval=value, prdesc="benchmarks/ids.py"
                )
            )


def clean_up(engine: sa.Engine) -> None:
    """Remove what the benchmark wrote: its DMS_PARAMS rows, counters and sequences."""
    dialect = dialect_of(engine)
    schema = dms_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.delete(dms_params).where(
                dms_params.c.prtyp == "DMSCONFIG", dms_params.c.prcd.like(f"ID_%.{PREFIX}_%")
            )
        )
        conn.execute(sa.delete(dms_idpool).where(dms_idpool.c.entitynm.like(f"{PREFIX}_%")))
        if dialect.capabilities.sequences:
            for mode, block in VARIANTS:
                seq = sequence_name(entity_of(mode, block))
                if dialect.sequence_exists(conn, seq, schema):
                    conn.exec_driver_sql(f"DROP SEQUENCE {schema + '.' if schema else ''}{seq}")


def run_variant(engine: sa.Engine, mode: str, block: int, n: int) -> Result:
    configure(engine, mode, block)
    provider = IdProvider(engine)  # fresh: empty cache, reads the config
    entity = entity_of(mode, block)
    provider.next_id(entity)  # warm up: config read, sequence / counter row creation
    provider.round_trips = 0
    started = time.perf_counter()
    ids = [provider.next_id(entity) for _ in range(n)]
    seconds = time.perf_counter() - started
    assert len(set(ids)) == n and ids == sorted(ids), "ids must be unique and increasing"
    return Result(
        f"{mode} block {block}" + (" (one by one)" if block == 1 else ""),
        n,
        seconds,
        provider.round_trips,
    )


def print_table(results: list[Result], n: int, url: str) -> None:
    base = results[0]
    headers = ["variant", "ids/s", f"round trips / {n:,} ids", "speed-up", "round-trip reduction"]
    rows = []
    for r in results:
        saved = base.round_trips / r.round_trips if r.round_trips else float("inf")
        rows.append(
            [
                r.variant,
                f"{r.rate:,.0f}",
                f"{r.round_trips:,}",
                f"{r.rate / base.rate:,.1f}x",
                f"{saved:,.0f}x",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    print(f"ID provider, {n:,} ids fetched one by one with next_id on {url}")
    print("speed-up and round-trip reduction are relative to SEQUENCE one by one\n")
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    print(line)
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--url",
        help="PostgreSQL (or Oracle) metadata database; default: a throw-away PostgreSQL server",
    )
    parser.add_argument("--ids", type=int, default=10_000, help="ids per variant")
    args = parser.parse_args()

    server = None
    url = args.url
    if url is None:
        from dms_orchestration_tests.pg_server import PostgresServer

        server = PostgresServer().start()
        url = server.url()
    engine = create_engine(url)
    try:
        init_schema(engine)
        sequences = dialect_of(engine).capabilities.sequences
        variants = [v for v in VARIANTS if sequences or v[0] != "SEQUENCE"]
        results = [run_variant(engine, mode, block, args.ids) for mode, block in variants]
        print_table(results, args.ids, engine.url.render_as_string(hide_password=True))
    finally:
        try:
            clean_up(engine)
        finally:
            engine.dispose()
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
