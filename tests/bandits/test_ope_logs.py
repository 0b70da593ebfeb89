"""Off-policy evaluation on real files and on the project's own decision log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from tailorkit.collect.pipeline import Collector
from tailorkit.decide.bandit_runtime import BanditRuntime
from tailorkit.decide.log import exposure_event
from tailorkit.decide.placements import BanditSpec, bandit_specs
from tailorkit.measure.ope_logs import (
    evaluate_file,
    evaluate_log,
    evaluation_policy,
    read_decision_log,
    read_log_file,
)
from tailorkit.project import load_project
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import Warehouse
from tests.helpers import event

ARMS = ("a0", "a1", "a2")


def simulate(n: int, seed: int = 0) -> tuple[pa.Table, np.ndarray]:
    """A logged softmax policy (with 10% uniform) on two features and a segment.

    Returns the log and each row's true click probability of every arm.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    segment = rng.choice(["vip", "new"], n)
    vip = (segment == "vip").astype(float)
    click = 1 / (1 + np.exp(-(np.array([-1.5, -1.0, -2.0]) + np.outer(x[:, 0], [0.8, -0.5, 1.2])
                              + np.outer(vip, [0.0, 0.6, 0.3]))))  # fmt: skip
    scores = np.outer(x[:, 1], [1.0, -1.0, 0.5])
    logging = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    logging = 0.9 * logging + 0.1 / 3
    u = rng.random(n)
    action = (u[:, None] > logging.cumsum(axis=1)).sum(axis=1)
    reward = (rng.random(n) < click[np.arange(n), action]).astype(int)
    table = pa.table(
        {
            "x0": x[:, 0],
            "x1": x[:, 1],
            "segment": segment,
            "action": [ARMS[a] for a in action],
            "reward": reward,
            "propensity": logging[np.arange(n), action],
        }
    )
    return table, click


def write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    elif path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
    return path


def test_formats_agree_and_estimates_cover_the_truth(tmp_path: Path) -> None:
    table, click = simulate(4000)
    reports = [
        evaluate_file(write(table, tmp_path / f"log{suffix}"), "uniform", seed=0)
        for suffix in (".csv", ".parquet", ".ndjson")
    ]
    for other in reports[1:]:
        for name in ("ips", "snips", "dr"):
            assert other["estimates"][name]["value"] == pytest.approx(
                reports[0]["estimates"][name]["value"], rel=1e-9
            )
    report = reports[0]
    # IPS by hand: mean of (1/3) / propensity * reward
    p = table.column("propensity").to_numpy()
    r = table.column("reward").to_numpy()
    assert report["estimates"]["ips"]["value"] == pytest.approx(np.mean(r / (3 * p)), rel=1e-12)
    truth = click.mean()  # every arm with probability 1/3, over these contexts
    for name in ("ips", "snips", "dr"):
        est = report["estimates"][name]
        assert est["ci_low"] <= truth <= est["ci_high"], (name, est, truth)
    assert report["logged"]["value"] == pytest.approx(r.mean())
    assert abs(report["diagnostics"]["mean_weight"] - 1.0) < 0.05
    assert report["n"] == 4000 and report["arms"] == list(ARMS)


def test_arm_and_file_policies(tmp_path: Path) -> None:
    table, click = simulate(3000, seed=1)
    path = write(table, tmp_path / "log.parquet")
    a = np.array([ARMS.index(v) for v in table.column("action").to_pylist()])
    p = table.column("propensity").to_numpy()
    r = table.column("reward").to_numpy()
    always = evaluate_file(path, "arm:a1", seed=0)
    assert always["estimates"]["ips"]["value"] == pytest.approx(np.mean((a == 1) * r / p))
    est = always["estimates"]["snips"]
    assert est["ci_low"] <= click[:, 1].mean() <= est["ci_high"]

    # per-row probabilities from a file: prefer a2 where x0 > 0, else a0
    x0 = table.column("x0").to_numpy()
    probs = np.where(x0[:, None] > 0, [0.1, 0.1, 0.8], [0.8, 0.1, 0.1])
    policy_file = tmp_path / "target.csv"
    pacsv.write_csv(pa.table({arm: probs[:, i] for i, arm in enumerate(ARMS)}), policy_file)
    by_file = evaluate_file(path, f"file:{policy_file}", seed=0)
    expected = np.mean(probs[np.arange(len(a)), a] / p * r)
    assert by_file["estimates"]["ips"]["value"] == pytest.approx(expected)
    truth = (probs * click).sum(axis=1).mean()
    est = by_file["estimates"]["dr"]
    assert est["ci_low"] <= truth <= est["ci_high"]


def bad_log(tmp_path: Path, rows: str, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    path.write_text(rows)
    return path


@pytest.mark.parametrize(
    ("rows", "policy", "message"),
    [
        ("action,reward\na,1\nb,0\n", "uniform", r"missing columns \['propensity'\]"),
        ("action,reward,propensity\na,1,0.5\nb,0,0.0\n", "uniform", r"\(0, 1\]: row 2 has 0.0"),
        ("action,reward,propensity\na,1,1.5\nb,0,0.5\n", "uniform", r"\(0, 1\]: row 1 has 1.5"),
        ("action,reward,propensity\na,1,\nb,0,0.5\n", "uniform", "propensity: row 1 is empty"),
        ("action,reward,propensity\na,x,0.5\nb,0,0.5\n", "uniform", "reward: must hold numbers"),
        ("action,reward,propensity\na,1,0.5\nb,0,0.5\n", "arm:zzz", "arm:zzz: no such arm"),
        ("action,reward,propensity\na,1,0.5\nb,0,0.5\n", "softmax", "unknown policy 'softmax'"),
        ("action,reward,propensity\na,1,0.5\n", "uniform", "at least two arms"),
        ("action,reward,propensity\na,1,0.5\nb,0,0.5\n", "bandit:x", "needs a project"),
    ],
)
def test_clear_errors(tmp_path: Path, rows: str, policy: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_file(bad_log(tmp_path, rows), policy)


def test_policy_file_errors(tmp_path: Path) -> None:
    log = read_log_file(bad_log(tmp_path, "action,reward,propensity\na,1,0.5\nb,0,0.5\n"))
    short = bad_log(tmp_path, "a,b\n0.5,0.5\n", "short.csv")
    with pytest.raises(ValueError, match="1 rows, the log has 2"):
        evaluation_policy(log, f"file:{short}")
    wrong = bad_log(tmp_path, "a,b\n0.5,0.5\n0.9,0.3\n", "wrong.csv")
    with pytest.raises(ValueError, match="row 2 is not a probability distribution"):
        evaluation_policy(log, f"file:{wrong}")
    lacking = bad_log(tmp_path, "a\n1\n1\n", "lacking.csv")
    with pytest.raises(ValueError, match=r"missing probability columns \['b'\]"):
        evaluation_policy(log, f"file:{lacking}")
    with pytest.raises(ValueError, match=r"use a \.csv, \.parquet"):
        read_log_file(bad_log(tmp_path, "x", "log.xlsx"))


def test_short_logs_skip_the_model_estimators(tmp_path: Path) -> None:
    log = read_log_file(bad_log(tmp_path, "action,reward,propensity\na,1,0.5\nb,0,0.5\n"))
    report = evaluate_log(log, evaluation_policy(log, "uniform"))
    assert sorted(report["estimates"]) == ["ips", "snips"] and report["skipped"] == ["dm", "dr"]


# -- the decision log ----------------------------------------------------------------------

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SPEC = BanditSpec(
    "promo", "thompson", ("sale", "new_in"), 0.0, ("vip",), (), {}, "click", 3600.0, True, "f"
)


def exposure(user: str, arm: int, minutes: float, propensity: float, segment: str) -> dict:
    return exposure_event(
        kind="bandit", key="promo", variation=arm, variation_key=SPEC.arms[arm],
        propensity=propensity, user_id=user, timestamp=T0 + timedelta(minutes=minutes),
        placement="promo", segment=segment,
    )  # fmt: skip


def click(user: str, minutes: float, placement: str = "promo", **props: float) -> dict:
    stamp = (T0 + timedelta(minutes=minutes)).isoformat()
    return event(user_id=user, type="click", timestamp=stamp,
                 properties={"placement": placement, **props})  # fmt: skip


def test_rewards_are_attributed_as_the_runtime_does(
    warehouse: Warehouse, project_dir: Path
) -> None:
    settings = load_project(project_dir).settings
    events = [
        exposure("u1", 0, 0, 0.5, "vip"), click("u1", 10),  # rewarded
        exposure("u2", 1, 0, 0.25, "other"), click("u2", 61),  # after the 1 h window
        exposure("u3", 0, 0, 0.5, "vip"), click("u3", 5, placement="hero"),  # elsewhere
        exposure("u4", 1, 0, 0.75, "vip"), click("u4", -0.05),  # 3 s early: clock slack
        exposure("u5", 0, 0, 0.5, "other"), exposure("u5", 1, 20, 0.5, "other"),
        click("u5", 30),  # belongs to u5's second decision only
        exposure("u6", 1, 0, 0.5, "vip"), click("u6", 2, reward=0.25), click("u6", 3),
        exposure("u7", 0, 1000, 0.5, "vip"),  # window still open at `now`: left out
        event(user_id="u8", type="exposure", timestamp=T0.isoformat(),
              properties={"kind": "bandit", "key": "other", "variation": 0}),  # another bandit
    ]  # fmt: skip
    result = Collector(warehouse, settings).ingest_items(events, "test")
    assert result.to_dict()["accepted"] == len(events)
    log = read_decision_log(warehouse, SPEC, now=T0 + timedelta(minutes=200))
    rows = sorted(
        zip(log.timestamp.tolist(), log.action.tolist(), log.reward.tolist(),
            log.propensity.tolist(), log.segment.tolist(), strict=True)  # type: ignore[union-attr]
    )  # fmt: skip
    t0 = T0.timestamp()
    assert rows == sorted(
        [
            (t0, 0, 1.0, 0.5, "vip"),  # u1
            (t0, 1, 0.0, 0.25, "other"),  # u2
            (t0, 0, 0.0, 0.5, "vip"),  # u3
            (t0, 1, 1.0, 0.75, "vip"),  # u4
            (t0, 0, 0.0, 0.5, "other"),  # u5 first
            (t0 + 1200, 1, 1.0, 0.5, "other"),  # u5 second
            (t0, 1, 0.25, 0.5, "vip"),  # u6: the first reward event counts
        ]
    )
    report = evaluate_log(log, evaluation_policy(log, "arm:new_in"), estimators=("ips",))
    # IPS by hand: rows with new_in, reward / propensity, over 7 rows
    assert report["estimates"]["ips"]["value"] == pytest.approx(
        (1 / 0.75 + 1 / 0.5 + 0.25 / 0.5) / 7
    )
    with pytest.raises(ValueError, match="no decisions with a closed attribution window"):
        read_decision_log(
            warehouse, SPEC, now=T0 + timedelta(minutes=200), since=T0 + timedelta(days=1)
        )


def test_a_bandit_of_the_project_as_evaluation_policy(tmp_path: Path) -> None:
    root = write_project(tmp_path / "shop")
    placements = {
        "bandits": {
            "promo": {
                "arms": list(ARMS), "by_segment": ["vip"], "floor": 0.05,
                "reward": {"event": "click", "window": "1h"},
            }
        },
        "placements": {
            "promo": {
                "default": "a0", "bandit": "promo",
                "variants": {arm: {"content": arm} for arm in ARMS},
            }
        },
    }  # fmt: skip
    (root / "placements.yaml").write_text(yaml.safe_dump(placements))
    project = load_project(root)
    spec = bandit_specs(placements)["promo"]
    # the server learned: a2 is best for vip; saved to the state file
    runtime = BanditRuntime(root / ".tailorkit" / "bandits.json", seed=0)
    runtime.sync({"promo": spec})
    for _ in range(30):
        runtime.update("promo", "a2", 1.0, segment="vip")
        runtime.update("promo", "a0", 0.0, segment="vip")
    assert runtime.save()
    vip = runtime.policy("promo").probabilities("vip")
    other = runtime.policy("promo").probabilities("other")

    table, _ = simulate(500, seed=2)
    path = write(table, tmp_path / "log.csv")
    report = evaluate_file(path, "bandit:promo", project=project, seed=0)
    segments = np.array(table.column("segment").to_pylist())
    target = np.where((segments == "vip")[:, None], vip, other)  # "new" is not a bandit segment
    a = np.array([ARMS.index(v) for v in table.column("action").to_pylist()])
    p = table.column("propensity").to_numpy()
    r = table.column("reward").to_numpy()
    expected = np.mean(target[np.arange(len(a)), a] / p * r)
    assert report["estimates"]["ips"]["value"] == pytest.approx(expected)
    assert vip[2] > 0.8 and other == pytest.approx((1 / 3,) * 3)
