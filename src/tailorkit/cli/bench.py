"""``tailorkit bench NAME``: run ``benchmarks/NAME.py`` and report its result line.

A benchmark script prints JSON lines and, last, the result
(ARCHITECTURE.md's benchmark contract)::

    {"bench": ..., "metric": ..., "value": ..., "baseline": ..., "ratio": ...}

The command runs the script with this Python, passes its earlier lines
through, checks the last one and adds the machine's load average before and
after the run (timings on a shared machine mean little without it).

>>> result_line(['{"note": 1}', '{"bench": "b", "metric": "m", "value": 2, '
...              '"baseline": 1, "ratio": 2.0}', ""])["ratio"]
2.0
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: the keys every result line has (ARCHITECTURE.md, "Benchmarks")
RESULT_KEYS = ("bench", "metric", "value", "baseline", "ratio")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class BenchError(ValueError):
    """A benchmark that cannot be run, failed, or broke the output contract."""


def default_folder() -> Path:
    """``./benchmarks`` when it exists, else the ``benchmarks/`` of this source tree."""
    here = Path("benchmarks")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "benchmarks"


def available(folder: Path) -> list[str]:
    """Names of the benchmark scripts in ``folder``.

    >>> available(Path("/nonexistent"))
    []
    """
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if _NAME.fullmatch(p.stem))


def script_for(name: str, folder: Path) -> Path:
    """The script of benchmark ``name``; :class:`BenchError` naming the choices if none."""
    script = folder / f"{name}.py"
    if not _NAME.fullmatch(name) or not script.is_file():
        names = ", ".join(available(folder)) or "none"
        raise BenchError(f"no benchmark {name!r} in {folder} (available: {names})")
    return script


def result_line(lines: Sequence[str]) -> dict[str, Any]:
    """The last non-empty line as the contract's JSON object, else :class:`BenchError`."""
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    try:
        result = json.loads(last)
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise BenchError(f"the last output line is not a JSON object: {last[:200]!r}")
    missing = [k for k in RESULT_KEYS if k not in result]
    if missing:
        raise BenchError(f"the result line lacks {missing}: {last[:200]}")
    return result


def run_bench(
    name: str,
    args: Sequence[str],
    folder: Path,
    echo: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run the benchmark; returns its result line plus ``load_average`` and ``seconds``.

    Every stdout line but the result goes to ``echo``; stderr is the caller's.
    """
    script = script_for(name, folder)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    command = [sys.executable, str(script), *args]
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if lines:
                echo(lines[-1].rstrip("\n"))
            lines.append(line)
        code = proc.wait()
    if code != 0:
        raise BenchError(f"benchmarks/{script.name} exited with status {code}")
    result = result_line(lines)
    return {
        **result,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python", f"benchmarks/{script.name}", *args]),
    }
