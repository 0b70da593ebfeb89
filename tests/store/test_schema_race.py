"""Several processes opening one fresh PostgreSQL warehouse at once (server + workers)."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import throwaway_database

OPEN = """
import sys, time
from tailorkit.store.warehouse import Warehouse
start = float(sys.argv[2])
while time.time() < start:
    pass
print(sorted(Warehouse(sys.argv[1]).con.list_tables()))
"""


def test_processes_creating_the_tables_together_all_succeed() -> None:
    with throwaway_database() as url:
        # all four leave the busy wait at the same instant, so their CREATE TABLEs collide
        start = str(time.time() + 4)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN, url, start],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        results = [p.communicate(timeout=120) for p in procs]
        for proc, (out, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, err[-2000:]
            assert out.strip() == "['events', 'identities', 'ingest_stats']"
