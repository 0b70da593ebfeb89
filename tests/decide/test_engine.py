"""The decision engine in process: rules, owners, stability, holdout, consent, failures."""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable
from typing import Any

import pytest

from tailorkit import metrics
from tailorkit.decide.content import TemplateChecker
from tailorkit.decide.engine import DecideRequest, DecisionEngine, ProfileView
from tailorkit.decide.memory import ConsentRegistry
from tailorkit.decide.placements import compile_definitions
from tailorkit.evaluate import Evaluator
from tests.decide.conftest import FEATURES, PLACEMENTS


class Clock:
    """A settable wall clock (seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def build(
    placements: dict[str, Any] | None = None,
    profiles: dict[str, ProfileView] | Callable[[str], ProfileView] | None = None,
    clock: Clock | None = None,
    **kwargs: Any,
) -> tuple[DecisionEngine, list[dict[str, Any]]]:
    """An engine on the test definitions; returns it and the exposure log."""
    checker = TemplateChecker(profile_features=["first_name", "cart_adds_24h"])
    doc = copy.deepcopy(placements or PLACEMENTS)
    if placements is None:  # a loaded CI machine must not turn a decision into the default
        doc["settings"]["deadline_ms"] = 10_000
    hero = doc["placements"]["home_hero"]["variants"]["generic"]
    if "template" in hero:  # no templates folder here: inline the file's content
        doc["placements"]["home_hero"]["variants"]["generic"] = {
            "content": "<h1>Welcome to {{ placement }}</h1>"
        }
    definitions = compile_definitions(doc, checker, list(FEATURES["features"]))
    logged: list[dict[str, Any]] = []
    lookup = profiles
    if isinstance(profiles, dict):
        table = profiles

        def lookup(person: str) -> ProfileView:
            return table.get(person, ProfileView())

    engine = DecisionEngine(
        definitions,
        Evaluator.from_payload(FEATURES),
        profiles=lookup,  # type: ignore[arg-type]
        exposures=logged.extend,
        profile_features=["first_name", "cart_adds_24h"],
        clock=clock or Clock(),
        **kwargs,
    )
    return engine, logged


def test_rules_apply_in_priority_order_with_profile_and_context() -> None:
    abandoner = ProfileView({"first_name": "Ada", "cart_adds_24h": 2}, ("cart_abandoners",))
    engine, logged = build(profiles={"ada": abandoner})
    out = engine.decide(DecideRequest(user_id="ada", context={"device": "mobile"}))
    hero = out["placements"]["home_hero"]
    assert hero == {
        "content": "<h1>Ada, see your cart</h1>",
        "variant": "cart",
        "source": "rule",
        "rule": "abandoners",
    }
    assert out["segments"] == ["cart_abandoners"]
    assert out["placements"]["recs"]["content"] == "<li>Your cart</li>"  # by segment
    mobile = engine.decide(DecideRequest(user_id="bob", context={"device": "mobile"}))
    assert mobile["placements"]["home_hero"]["rule"] == "mobile"
    assert mobile["placements"]["home_hero"]["content"] == "<h1>On the go? mobile</h1>"
    assert mobile["placements"]["recs"]["content"] == "<li>Boots</li><li>Socks</li>"
    assert mobile["placements"]["recs"]["source"] == "recommendation"
    kinds = {e["properties"]["kind"] for e in logged}
    assert {"rule", "recommendation", "bandit"} <= kinds


def test_feature_experiment_owns_a_rule_and_logs_its_propensity() -> None:
    engine, logged = build()
    seen = {}
    for i in range(200):
        out = engine.decide(DecideRequest(user_id=f"user-{i}"))
        hero = out["placements"]["home_hero"]
        assert hero["source"] == "experiment" and hero["experiment"] == "hero-copy-test"
        seen[hero["variant"]] = seen.get(hero["variant"], 0) + 1
        assert out["flags"]["hero_copy"] == hero["variant"]
        assert out["experiments"][0]["key"] == "hero-copy-test"
    assert set(seen) == {"generic", "bold"} and min(seen.values()) > 60
    exposures = [e["properties"] for e in logged if e["properties"]["kind"] == "experiment"]
    assert len(exposures) == 200  # once per user, not once per evaluation
    assert {e["propensity"] for e in exposures} == {0.5}


def test_an_assignment_is_logged_once_per_user_per_dedup_period() -> None:
    clock = Clock()
    engine, logged = build(clock=clock)

    def experiment_exposures() -> int:
        return sum(e["properties"]["kind"] == "experiment" for e in logged)

    for _ in range(3):
        engine.decide(DecideRequest(user_id="same"))
    assert experiment_exposures() == 1
    clock.now += 1801  # exposure_dedup defaults to 30 minutes
    engine.decide(DecideRequest(user_id="same"))
    assert experiment_exposures() == 2


def test_bandit_owns_a_placement_and_logs_exact_propensities() -> None:
    engine, logged = build()
    arms = []
    for i in range(300):
        promo = engine.decide(DecideRequest(anonymous_id=f"a{i}"))["placements"]["promo"]
        assert promo["source"] == "bandit" and promo["bandit"] == "promo_bandit"
        arms.append(promo["variant"])
    assert 90 < arms.count("sale") < 210
    bandit = [e["properties"] for e in logged if e["properties"]["kind"] == "bandit"]
    assert len(bandit) == 300
    assert all(abs(e["propensity"] - 0.5) < 1e-9 for e in bandit)
    assert [e["variation_key"] for e in bandit] == arms


def test_what_waits_between_requests_is_not_tracked_by_the_garbage_collector() -> None:
    # Cached flag values (with their exposures, replayed on a hit) and bandit decisions
    # waiting for rewards stay for thousands of users: as objects, every collection
    # that reached them scanned them all (a full one took ~60 ms at the cache's size).
    engine, logged = build()
    for i in range(2_000):
        for _ in range(2):  # the second asks again: a cache hit replays the exposure
            out = engine.decide(DecideRequest(user_id=f"user-{i}"))
            assert out["placements"]["promo"]["source"] == "bandit"
    assert sum(e["properties"]["kind"] == "experiment" for e in logged) == 2_000
    evaluator = engine.evaluator
    assert isinstance(evaluator, Evaluator)
    cached = list(evaluator._values.values())
    pending = list(engine.bandits._pending.values())
    assert len(cached) == 2_000 and len(pending) == 2_000  # one per user
    for _ in range(4):  # a tuple is untracked once its contents were: a level per pass
        gc.collect()
    assert not any(gc.is_tracked(entry) for entry in cached)
    assert not any(gc.is_tracked(decision) for decision in pending)


def test_frequency_cap_ends_minimum_dwell() -> None:
    clock = Clock()
    engine, _ = build(clock=clock)

    def banner(country: str) -> dict[str, Any]:
        req = DecideRequest(user_id="u1", attributes={"country": country}, placements=["banner"])
        result: dict[str, Any] = engine.decide(req)["placements"]["banner"]
        clock.now += 60
        return result

    first = banner("DE")
    assert (first["variant"], first["source"]) == ("de", "rule")
    held = banner("FR")  # no longer matches, but within the 1 h dwell
    assert (held["variant"], held.get("held")) == ("de", True)
    capped = banner("DE")  # shown twice today: the cap (2 per day) wins over the dwell
    assert (capped["variant"], capped["source"]) == ("plain", "default")
    assert banner("DE")["variant"] == "plain"  # now plain is held for its dwell
    clock.now += 2 * 86400
    assert banner("DE")["variant"] == "de"  # dwell and cap windows are over


def test_render_error_and_deadline_fall_back_to_default() -> None:
    doc = copy.deepcopy(PLACEMENTS)
    doc["placements"]["banner"]["variants"]["de"]["content"] = "{{ context.page.title }}"
    engine, _ = build(doc)
    out = engine.decide(DecideRequest(user_id="u1", attributes={"country": "DE"}))
    banner = out["placements"]["banner"]
    assert (banner["variant"], banner["source"]) == ("plain", "default")
    assert banner["reason"].startswith("render error in de: UndefinedError")
    assert banner["content"] == "<div>Free shipping</div>"

    doc["settings"]["deadline_ms"] = 0.001
    slow, _ = build(doc)
    before = metrics.DECIDE_FALLBACKS.labels("deadline")._value.get()
    out = slow.decide(DecideRequest(user_id="u1", context={"device": "mobile"}))
    assert {p["reason"] for p in out["placements"].values()} == {"deadline exceeded"}
    assert out["placements"]["home_hero"]["content"] == "<h1>Welcome to home_hero</h1>"
    assert metrics.DECIDE_FALLBACKS.labels("deadline")._value.get() - before == 4


def test_internal_error_gives_defaults_with_a_reason() -> None:
    def broken(person: str) -> ProfileView:
        raise ConnectionError("profile store down")

    engine, _ = build(profiles=broken)
    out = engine.decide(DecideRequest(user_id="u1"))
    assert {p["source"] for p in out["placements"].values()} == {"default"}
    assert {p["reason"] for p in out["placements"].values()} == {"internal error: ConnectionError"}


def test_global_holdout_is_stable_and_logged() -> None:
    doc = copy.deepcopy(PLACEMENTS)
    doc["holdout"] = {"percent": 20}
    engine, logged = build(doc)
    held = set()
    for i in range(2000):
        out = engine.decide(DecideRequest(user_id=f"u{i}"))
        if out["holdout"]:
            held.add(i)
            assert {p["reason"] for p in out["placements"].values()} == {"holdout"}
    assert 340 < len(held) < 460
    again = {i for i in range(2000) if engine.decide(DecideRequest(user_id=f"u{i}"))["holdout"]}
    assert again == held
    arms = [e["properties"] for e in logged if e["properties"]["key"] == "global-holdout"]
    assert len(arms) == 2000  # once per user within the dedup period
    assert {(a["variation_key"], a["propensity"]) for a in arms} == {
        ("holdout", 0.2),
        ("personalized", 0.8),
    }


def test_no_consent_gets_defaults_and_nothing_is_logged() -> None:
    consent = ConsentRegistry()
    consent.set(["opted-out"], personalization=False)
    refused = ProfileView(consent=False)
    engine, logged = build(profiles={"refused": refused}, consent=consent)
    requests = [
        DecideRequest(user_id="u1", personalization=False, attributes={"country": "DE"}),
        DecideRequest(user_id="u2", anonymous_id="opted-out"),
        DecideRequest(user_id="refused"),
    ]
    for req in requests:
        out = engine.decide(req)
        reasons = {p["reason"] for p in out["placements"].values()}
        assert reasons == {"no personalization consent"}
    assert engine.decide(requests[0])["flags"]["new_checkout"] is True  # flags still work
    assert logged == []


def test_templates_without_user_fields_are_cached() -> None:
    engine, _ = build()
    for _ in range(3):
        engine.decide(DecideRequest(user_id="m", context={"device": "mobile"}))
    keys = list(engine.cache._items)
    # the recommendation template reads only a static list: cached per list, segment, count
    assert [(k[0], k[1], k[3]) for k in keys] == [
        ("home_hero", "mobile", None),
        ("recs", "grid", ("popular", None, 2)),
    ]
    engine.decide(DecideRequest(user_id="m", context={"device": "tablet"}))
    assert len(engine.cache._items) == 2  # "tablet" matches no rule: the experiment decides


def test_a_cached_static_list_rendering_follows_the_segment() -> None:
    abandoner = ProfileView(segments=("cart_abandoners",))
    engine, _ = build(profiles={"a": abandoner})
    for person in ("m", "a", "m", "a"):
        recs = engine.decide(DecideRequest(user_id=person))["placements"]["recs"]
        expected = "<li>Your cart</li>" if person == "a" else "<li>Boots</li><li>Socks</li>"
        assert recs["content"] == expected
    assert {k[3] for k in engine.cache._items if k[0] == "recs"} == {
        ("popular", None, 2),
        ("popular", "cart_abandoners", 2),
    }


@pytest.mark.parametrize(
    ("change", "file", "key", "reason"),
    [
        (
            lambda d: d["placements"]["banner"].update(default="nope"),
            "placements.yaml",
            "placements.banner.default",
            "no variant 'nope'",
        ),
        (
            lambda d: d["placements"]["banner"]["variants"]["de"].update(content="{% if %}"),
            "placements.yaml",
            "placements.banner.variants.de",
            "syntax error at line 1",
        ),
        (
            lambda d: d["placements"]["banner"]["variants"]["de"].update(content="{{ usr.id }}"),
            "placements.yaml",
            "placements.banner.variants.de",
            "unknown variable 'usr'",
        ),
        (
            lambda d: d["placements"]["banner"]["variants"]["de"].update(
                content="{{ profile.first_nam }}"
            ),
            "placements.yaml",
            "placements.banner.variants.de",
            "unknown profile feature 'first_nam'",
        ),
        (
            lambda d: d["placements"]["banner"]["variants"]["plain"].update(
                content="{{ user.id.upper() }}"
            ),
            "placements.yaml",
            "placements.banner.variants.plain",
            "must render without user data",
        ),
        (
            lambda d: d["placements"]["banner"]["variants"]["de"].update(
                content="{% include 'x.html' %}"
            ),
            "placements.yaml",
            "placements.banner.variants.de",
            "may not include",
        ),
        (
            lambda d: d["placements"]["home_hero"]["rules"][1].update(priority=100),
            "placements.yaml",
            "placements.home_hero.rules.1.priority",
            "priority 100 is also rule 'abandoners'",
        ),
        (
            lambda d: d["bandits"]["promo_bandit"].update(arms=["sale", "gone"]),
            "placements.yaml",
            "bandits.promo_bandit.arms",
            "arm 'gone' is not a variant",
        ),
        (
            lambda d: d["placements"]["home_hero"]["rules"][2].update(feature="no_such_flag"),
            "placements.yaml",
            "placements.home_hero.rules.2.feature",
            "no feature 'no_such_flag'",
        ),
        (
            lambda d: d["placements"]["home_hero"]["rules"][0].update(bandit="promo_bandit"),
            "placements.yaml",
            "placements.home_hero.rules.0",
            "exactly one of variant, experiment, feature, bandit (found variant, bandit)",
        ),
        (
            lambda d: d["placements"]["banner"].update(colour="red"),
            "placements.yaml",
            "placements.banner",
            "Additional properties are not allowed ('colour'",
        ),
        (
            lambda d: d["placements"]["banner"]["rules"][0].pop("priority"),
            "placements.yaml",
            "placements.banner.rules.0",
            "'priority' is a required property",
        ),
    ],
)
def test_bad_definitions_are_refused_with_file_key_and_reason(
    change: Callable[[dict[str, Any]], Any], file: str, key: str, reason: str
) -> None:
    from tailorkit.project.loader import ConfigError

    doc = copy.deepcopy(PLACEMENTS)
    change(doc)
    with pytest.raises(ConfigError) as info:
        build(doc)
    assert (info.value.file, info.value.path) == (file, key)
    assert reason in info.value.message


def test_a_user_specific_rendering_is_cached_by_the_values_it_reads() -> None:
    profiles = {
        "ada": ProfileView({"first_name": "Ada"}, ("cart_abandoners",)),
        "bob": ProfileView({"first_name": "Bob"}, ("cart_abandoners",)),
    }
    engine, _ = build(profiles=profiles)
    for person in ("ada", "bob", "ada", "bob"):
        hero = engine.decide(DecideRequest(user_id=person))["placements"]["home_hero"]
        assert hero["content"] == f"<h1>{person.title()}, see your cart</h1>"
    cart = [k for k in engine.cache._items if k[:2] == ("home_hero", "cart")]
    assert len(cart) == 2  # one per profile: the template reads only ``profile``
    profiles["ada"] = ProfileView({"first_name": "Ada L."}, ("cart_abandoners",))
    hero = engine.decide(DecideRequest(user_id="ada"))["placements"]["home_hero"]
    assert hero["content"] == "<h1>Ada L., see your cart</h1>"


def test_a_template_with_the_random_filter_is_rendered_every_time() -> None:
    doc = copy.deepcopy(PLACEMENTS)
    cart = doc["placements"]["home_hero"]["variants"]["cart"]
    cart["content"] = "<h1>{{ profile.first_name }} {{ [1, 2, 3] | random }}</h1>"
    abandoner = ProfileView({"first_name": "Ada"}, ("cart_abandoners",))
    engine, _ = build(doc, profiles={"ada": abandoner})
    contents = {
        engine.decide(DecideRequest(user_id="ada"))["placements"]["home_hero"]["content"]
        for _ in range(60)
    }
    assert len(contents) == 3
    assert not [k for k in engine.cache._items if k[:2] == ("home_hero", "cart")]
