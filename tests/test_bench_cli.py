"""``tailorkit bench NAME``: runs benchmarks/NAME.py and checks the result-line contract."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import cli

GOOD = """
import json, sys
print(json.dumps({"note": "warm-up", "args": sys.argv[1:]}))
print(json.dumps({"bench": "tiny", "metric": "ops_per_s", "value": 20, "baseline": 10,
                  "ratio": 2.0}))
"""


def _folder(tmp_path: Path, **scripts: str) -> Path:
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    for name, text in scripts.items():
        (folder / f"{name}.py").write_text(text)
    return folder


def test_bench_prints_the_result_line_with_the_load_average(tmp_path: Path) -> None:
    folder = _folder(tmp_path, tiny=GOOD)
    done = cli("bench", "tiny", "--dir", str(folder), "--json", "--", "--size", "3")
    result = json.loads(done.stdout)
    assert {k: result[k] for k in ("bench", "metric", "value", "baseline", "ratio")} == {
        "bench": "tiny", "metric": "ops_per_s", "value": 20, "baseline": 10, "ratio": 2.0
    }  # fmt: skip
    assert len(result["load_average"]) == 2 and result["seconds"] >= 0
    assert result["command"] == "python benchmarks/tiny.py --size 3"
    # the earlier lines (with the passed-on arguments) go to stderr, not into the JSON
    assert json.loads(done.stderr.strip().splitlines()[0])["args"] == ["--size", "3"]


def test_bench_refuses_unknown_names_and_broken_contracts(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        tiny=GOOD,
        chatty="print('done in 3 s')\n",
        partial='print(\'{"bench": "partial", "value": 1}\')\n',
        crash="raise SystemExit(3)\n",
    )
    for name, message in [
        ("nope", "no benchmark 'nope'"),
        ("../tiny", "no benchmark '../tiny'"),
        ("chatty", "not a JSON object"),
        ("partial", "lacks ['metric', 'baseline', 'ratio']"),
        ("crash", "exited with status 3"),
    ]:
        done = cli("bench", name, "--dir", str(folder), "--json", check=False)
        assert done.returncode == 1, name
        assert message in json.loads(done.stdout)["error"], name
    listing = json.loads(cli("bench", "nope", "--dir", str(folder), "--json", check=False).stdout)
    assert "available: chatty, crash, partial, tiny" in listing["error"]


def test_bench_runs_a_real_benchmark() -> None:
    done = cli("bench", "evaluate", "--json", "--", "--users", "2000")
    result = json.loads(done.stdout)
    assert result["bench"] == "evaluate" and result["ratio"] > 0
    assert result["value"] > 0 and result["baseline"] > 0
