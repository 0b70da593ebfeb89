"""Dump what ``DecisionEngine.decide`` answers and logs, to compare two versions of the code.

Run it once per checkout on the same project and compare the files byte for byte::

    git worktree add /tmp/old HEAD~3
    PYTHONPATH=/tmp/old/src python benchmarks/decide_equivalence.py /tmp/old.txt --project P
    PYTHONPATH=src python benchmarks/decide_equivalence.py /tmp/new.txt --project P
    cmp /tmp/old.txt /tmp/new.txt

``P`` is a copy of the benchmark project of ``decide_http.py`` (without its
``.tailorkit`` folder). The requests are the benchmark's (visits of 5 pages),
varied: some users anonymous, some asking for a subset of placements (with
duplicates and an unknown key), some without consent, some with a non-string
country; a third of the users are in a ``vip`` segment. The clock is fixed
(0.2 s per request, so deduplication, dwell and caps expire within the run), the
bandit seeded, the render time bound lifted (a garbage-collector pause could
trip it at random) and the deadline far away. Written per request: the answer,
each exposure event without its random id, and (second pass) each flag exposure
record handed to a features-log callback; at the end, some users' memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))

import tailorkit.decide.content as content
from decide_http import request_bodies
from tailorkit.decide.engine import DecideRequest, ProfileView
from tailorkit.decide.service import DecideService
from tailorkit.project.loader import load_project
from tailorkit.server.routes_decide import _json_object, parse_decide

SOME = ["placement_3", "placement_0", "nope", "placement_3", "placement_2"]


def requests(n: int) -> list[DecideRequest]:
    out = []
    for i, body in enumerate(request_bodies(n)):
        r = parse_decide(_json_object(body))
        attributes, context = r.attributes, r.context
        if i % 11 == 3:
            r = DecideRequest(
                anonymous_id=f"anon-{r.user_id}", attributes=attributes, context=context
            )
        elif i % 13 == 5:
            r = DecideRequest(
                user_id=r.user_id, attributes=attributes, context=context, placements=SOME
            )
        elif i % 97 == 7:
            r = DecideRequest(
                user_id=r.user_id, attributes=attributes, context=context, personalization=False
            )
        elif i % 17 == 2:
            r = DecideRequest(
                user_id=r.user_id, attributes={**attributes, "country": 7}, context=context
            )
        out.append(r)
    return out


def profile(person: str) -> ProfileView:
    n = int(person.rsplit("-", 1)[-1]) if person[-1].isdigit() else 0
    return ProfileView({"page_views_7d": n % 100}, ("vip",) if n % 3 == 0 else ())


def memory_json(user: Any) -> bytes:
    """A user's memory in either layout (flat dict of tuples, or dataclass entries)."""
    if isinstance(user, dict):
        shown = {k[1]: list(v) for k, v in user.items() if k[0] == "s"}
        showings = {"|".join(k[1:]): list(v) for k, v in user.items() if k[0] == "c"}
        logged = {"|".join(k[1:]): v for k, v in user.items() if k[0] == "l"}
    else:
        shown = {k: [v.variant, v.source, v.rule, v.since] for k, v in user.shown.items()}
        showings = {"|".join(k): list(v) for k, v in user.showings.items()}
        logged = {"|".join(k): v for k, v in user.logged.items()}
    doc = {"shown": shown, "showings": showings, "logged": logged}
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def one_pass(project: Any, reqs: list[DecideRequest], features_log: bool, out: Any) -> None:
    """Decide every request on a fresh service, writing answers, events and records."""
    engine = DecideService(project).engine
    for live in engine.bandits._live.values():
        live.policy.set_rng(42)
    clock = [1_700_000_000.0]
    engine.clock = lambda: clock[0]
    engine.profiles = profile
    events: list[dict[str, Any]] = []
    engine.exposures = events.extend
    records: list[Any] = []

    def callback(uid: Any, aid: Any) -> Any:
        return lambda record: records.append((uid, aid, dataclasses.asdict(record)))

    if features_log:
        engine.flag_exposures = callback
    for r in reqs:
        clock[0] += 0.2
        answer = engine.decide(r, started=1e12)
        out.write(orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS) + b"\n")
        for event in events:
            assert len(event.pop("event_id")) == 36
            out.write(b"E " + orjson.dumps(event) + b"\n")
        for record in records:
            out.write(b"F " + orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n")
        events.clear()
        records.clear()
    out.write(f"users in memory {len(engine.memory)}\n".encode())
    for person in ("user-1", "user-3", "user-10", "user-999"):
        user = engine.memory._users.get(person)
        if user is not None:
            out.write(memory_json(user) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    content.MAX_RENDER_SECONDS = 1e9
    project = load_project(args.project)
    reqs = requests(args.requests)
    with args.out.open("wb") as out:
        one_pass(project, reqs, False, out)  # flag exposures through the engine's log
        one_pass(project, reqs, True, out)  # through a features-log callback
    print("wrote", args.out)


if __name__ == "__main__":
    main()
