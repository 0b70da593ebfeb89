"""``tailorkit build``: every model versioned, scores in the warehouse, failures contained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from tailorkit.cli.demo import DemoOptions, build_demo
from tailorkit.cli.main import app
from tailorkit.learn import build as build_module
from tailorkit.learn.artifacts import ArtifactStore
from tailorkit.learn.build import STEPS, BuildOptions, build
from tailorkit.learn.propensity import TaskConfig
from tailorkit.learn.recommender import RecConfig, Recommender
from tailorkit.learn.scores import score_rows, wide_scores, write_scores
from tailorkit.project import Project, load_project
from tailorkit.store.warehouse import Warehouse

FAST = BuildOptions(
    propensity=TaskConfig(task="propensity", folds=3),
    churn=TaskConfig(task="churn", folds=3),
    recommendations=RecConfig(factors_grid=(16,), alpha_grid=(1.0,)),
)


def cli(*args: str) -> Result:
    """``tailorkit ...`` in this process (no interpreter start-up)."""
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    folder = tmp_path_factory.mktemp("learn") / "shop"
    build_demo(DemoOptions(folder, users=600, days=30, seed=2), Console(quiet=True), quiet=True)
    return load_project(folder)


@pytest.fixture(scope="module")
def first_build(project: Project) -> dict[str, Any]:
    seen: list[tuple[str, str]] = []
    summary = build(project, FAST, lambda step, state, _: seen.append((step, state)))
    summary["progress"] = seen
    return summary


def test_build_trains_every_model(project: Project, first_build: dict[str, Any]) -> None:
    assert first_build["failed"] == [], first_build
    assert list(first_build["steps"]) == list(STEPS)
    assert [s for s, state in first_build["progress"] if state == "done"] == list(STEPS)
    store = ArtifactStore.of_project(project.root)
    for step in STEPS:
        version = first_build["steps"][step]["version"]
        assert store.current(step) == version
        metrics = store.metrics(step)
        assert metrics["version"] == version and metrics["seconds"] > 0
    assert (store.path("clusters") / "segments.yaml").exists()
    assert store.metrics("propensity")["cross_validation"]["logistic"]["auc"] > 0.5
    recommender = Recommender.load(store)
    assert len(recommender.recommend(recommender.suite.data.users[0], k=4)) == 4


def test_scores_are_written_for_profiles(project: Project, first_build: dict[str, Any]) -> None:
    wh = Warehouse(project.settings.store_url)
    try:
        rows = score_rows(wh)
        assert len(rows) >= first_build["steps"]["propensity"]["scored"]
        some = next(iter(rows.values()))
        assert {"cluster", "propensity_to_buy", "churn_risk"} <= set(some)
        assert 0 <= some["propensity_to_buy"] <= 1
        wide = wh.con.to_pyarrow(wide_scores(wh, ["propensity_to_buy", "churn_risk"]))
        scored = [p for p, v in rows.items() if {"propensity_to_buy", "churn_risk"} & set(v)]
        assert wide.num_rows == len(scored)
        assert wide.column_names[1:] == ["propensity_to_buy", "churn_risk"]
        version = wh.con.to_pyarrow(wh.con.table("profile_scores").model_version).to_pylist()
        assert any(v.startswith("propensity@") for v in version)
    finally:
        wh.close()


def test_a_failing_step_keeps_the_previous_version(
    project: Project, first_build: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx: Any, run: Any) -> dict[str, Any]:
        (run.path / "partial.txt").write_text("half a model")
        raise RuntimeError("out of memory")

    monkeypatch.setitem(build_module.RUNNERS, "propensity", broken)
    summary = build(project, BuildOptions(only=("propensity", "journeys")))
    store = ArtifactStore.of_project(project.root)
    before = first_build["steps"]["propensity"]["version"]
    assert summary["failed"] == ["propensity"]
    assert summary["steps"]["propensity"]["serving"] == before == store.current("propensity")
    assert summary["steps"]["journeys"]["status"] == "ok"
    failure = store.last_failure("propensity")
    assert failure is not None and "out of memory" in failure["error"]
    assert not [p for p in store.folder("propensity").iterdir() if p.name.startswith(".staging")]


def test_cli_build_json_and_stable_cluster_ids(project: Project) -> None:
    store = ArtifactStore.of_project(project.root)
    before = {p["id"]: p["name"] for p in store.metrics("clusters")["personas"]}
    out = cli("build", "--project", str(project.root), "--only", "clusters", "--json")
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["steps"]["clusters"]["status"] == "ok"
    metrics = store.metrics("clusters")
    assert metrics["alignment"]["drift"]["max_psi"] < 0.01  # same data, same population
    assert {p["id"]: p["name"] for p in metrics["personas"]} == before
    assert metrics["transitions"]["stayed_share"] > 0.95
    bad = cli("build", "--project", str(project.root), "--only", "nope", "--json")
    assert bad.exit_code == 2 and "unknown build steps" in json.loads(bad.stdout)["error"]


def test_scores_replace_by_name(tmp_path: Path) -> None:
    import pandas as pd

    wh = Warehouse(f"duckdb://{tmp_path / 'w.duckdb'}")
    write_scores(wh, "a", pd.Series({"p1": 1.0, "p2": 2.0}), "m@1")
    write_scores(wh, "b", pd.Series({"p1": 5.0}), "m@1")
    write_scores(wh, "a", pd.Series({"p3": 3.0}), "m@2")
    assert score_rows(wh) == {"p1": {"b": 5.0}, "p3": {"a": 3.0}}
    wh.close()


def test_artifact_store_prunes_but_keeps_the_served(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, keep=2)
    for _ in range(4):
        with store.run("m") as run:
            (run.path / "x").write_text("1")
    assert len(store.versions("m")) == 2 and store.current("m") == store.versions("m")[-1]
    with pytest.raises(ZeroDivisionError), store.run("m"):
        1 / 0  # noqa: B018
    assert store.current("m") == run.version
