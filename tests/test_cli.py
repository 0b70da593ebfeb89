"""The command line: init, config validation, file ingestion, erase, quality."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tailorkit.project import ConfigError, load_project
from tailorkit.store.warehouse import Warehouse
from tests.helpers import event


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tailorkit.cli.main", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def test_init_writes_a_valid_commented_project(tmp_path: Path) -> None:
    out = json.loads(cli("init", str(tmp_path / "p"), "--json").stdout)
    assert out["store"] == f"duckdb://{tmp_path / 'p' / 'tailorkit.duckdb'}"
    assert out["ingest_key"] != out["admin_key"]
    text = (tmp_path / "p" / "tailorkit.yaml").read_text()
    assert "# Ingest keys are browser-safe" in text
    for name in ("segments.yaml", "features.yaml", "placements.yaml", "templates"):
        assert (tmp_path / "p" / name).exists()
    again = cli("init", str(tmp_path / "p"), "--json", check=False)
    assert again.returncode == 2 and "already exists" in json.loads(again.stdout)["error"]


@pytest.mark.parametrize("name", ["on", "null", "2024", "it's: a #project"])
def test_init_keeps_any_folder_name_a_string(tmp_path: Path, name: str) -> None:
    from tailorkit.project.init import write_project

    root = write_project(tmp_path / "p", name=name)
    load_project(root)  # the schema wants a string
    text = (root / "tailorkit.yaml").read_text()
    assert yaml.safe_load(text)["project"] == name


@pytest.mark.parametrize(
    ("edit", "where", "what"),
    [
        (
            ("url: duckdb:///<project>/tailorkit.duckdb", "url: mysql://x"),
            "store.url",
            "does not match",
        ),
        (("max_depth: 8 ", "max_depth: -1 "), "limits.max_depth", "less than the minimum"),
        (("retention:", "retention:\n  typo_key: 1"), "retention", "typo_key"),
        (("  truncate_ip: true", "  truncate_ip: [oops"), "line", "not valid YAML"),
    ],
)
def test_config_errors_name_file_key_and_reason(
    project_dir: Path, edit: tuple[str, str], where: str, what: str
) -> None:
    path = project_dir / "tailorkit.yaml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as err:
        load_project(project_dir)
    message = str(err.value)
    assert message.startswith("tailorkit.yaml: ")
    assert where in message and what in message
    result = cli("quality", "--project", str(project_dir), "--json", check=False)
    assert result.returncode == 2 and "tailorkit.yaml" in json.loads(result.stdout)["error"]


def test_definition_file_errors_name_the_file(project_dir: Path) -> None:
    (project_dir / "segments.yaml").write_text("segments: []\n")
    with pytest.raises(
        ConfigError, match=r"^segments.yaml: segments: \[\] is not of type 'object'"
    ):
        load_project(project_dir)


def write_ndjson(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def test_ingest_files_skip_reports_line_numbers(project_dir: Path, tmp_path: Path) -> None:
    good = [event() for _ in range(5)]
    lines = [json.dumps(e) for e in good]
    lines.insert(1, "{broken")
    lines.insert(3, "")
    lines.insert(4, json.dumps(event(timestamp="soon")))
    write_ndjson(tmp_path / "a.ndjson", lines)
    csv_rows = [event() for _ in range(3)]
    csv = tmp_path / "b.csv"
    csv.write_text(
        "event_id,type,user_id,timestamp,properties\n"
        + "".join(
            f'{e["event_id"]},page_view,u1,{e["timestamp"]},"{{""a"": 1}}"\n' for e in csv_rows
        )
        + f"{uuid.uuid4()},page_view,,2026-11-20T10:00:00Z,\n"
    )
    parquet = tmp_path / "c.parquet"
    rows = [event() for _ in range(4)]
    pq.write_table(
        pa.table(
            {
                "event_id": [r["event_id"] for r in rows],
                "type": ["purchase"] * 4,
                "user_id": ["u2"] * 4,
                "timestamp": [r["timestamp"] for r in rows],
                "properties": pa.array([{"revenue": 9.5}] * 4),
            }
        ),
        parquet,
    )
    out = cli(
        "ingest",
        str(tmp_path / "a.ndjson"),
        str(csv),
        str(parquet),
        "--project",
        str(project_dir),
        "--json",
    )
    summary = json.loads(out.stdout)
    assert summary["accepted"] == 5 + 3 + 4
    assert summary["rejected"] == 3
    errors = {(Path(e["file"]).name, e["line"]): e["reason"] for e in summary["errors"]}
    assert errors[("a.ndjson", 2)] == "not valid JSON"
    assert errors[("a.ndjson", 5)].startswith("timestamp:")
    assert errors[("b.csv", 5)].startswith("user_id/anonymous_id")
    wh = Warehouse(load_project(project_dir).settings.store_url)
    props = wh.events.filter(wh.events.type == "purchase").properties.to_pyarrow().to_pylist()
    assert [json.loads(p) for p in props] == [{"revenue": 9.5}] * 4
    wh.close()
    rerun = json.loads(cli("ingest", str(parquet), "--project", str(project_dir), "--json").stdout)
    assert rerun["duplicates"] == 4 and rerun["accepted"] == 0


def test_ingest_abort_loads_nothing(project_dir: Path, tmp_path: Path) -> None:
    write_ndjson(tmp_path / "a.ndjson", [json.dumps(event()), "{broken", json.dumps(event())])
    out = cli(
        "ingest",
        str(tmp_path / "a.ndjson"),
        "--on-error",
        "abort",
        "--project",
        str(project_dir),
        "--json",
        check=False,
    )
    assert out.returncode == 1
    summary = json.loads(out.stdout)
    assert summary["aborted"] and summary["errors"][0]["line"] == 2
    assert Warehouse(load_project(project_dir).settings.store_url).count_events() == 0


def test_erase_and_quality_commands(project_dir: Path, tmp_path: Path) -> None:
    items = [
        event(user_id="dave"),
        event(user_id="erin"),
        event(
            user_id="bot1",
            context={"user_agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
        ),
    ]
    write_ndjson(tmp_path / "a.ndjson", [json.dumps(e) for e in items])
    cli("ingest", str(tmp_path / "a.ndjson"), "--project", str(project_dir), "--json")
    report = json.loads(cli("quality", "--project", str(project_dir), "--json").stdout)
    assert report["flagged_by_reason"] == {"bot_user_agent": 1}
    assert report["flagged_sample"][0]["person_id"] == "bot1"
    erased = json.loads(cli("erase", "dave", "--project", str(project_dir), "--json").stdout)
    assert erased["events_deleted"] == 1
    users = Warehouse(load_project(project_dir).settings.store_url).events.user_id.to_pyarrow()
    assert "dave" not in users.to_pylist()
