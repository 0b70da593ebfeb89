"""Simulated live traffic for the demo: sessions posted to ``/v1/events`` and ``/v1/decide``.

Run as ``python -m tailorkit.demo.traffic URL INGEST_KEY``. Each tick a
visitor (new, or one seen earlier in this run) has a session from the demo's
behavioural model; their events go to the server over HTTP and each session
asks for decisions on the demo's placements and features, so exposures,
experiments and bandits get data and the dashboard moves.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from tailorkit.demo.generator import DemoUser, new_user, simulate_session

PLACEMENTS = ["home_hero", "promo", "recs"]
FIRST_NUMBER = 9_000_000  # ids of live visitors: far above the generated history's


def _iso(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Timestamps as ISO text (the generator gives datetimes)."""
    for event in events:
        stamp = event.get("timestamp")
        if isinstance(stamp, datetime):
            event["timestamp"] = stamp.isoformat()
    return events


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def one_session(client: httpx.Client, rng: np.random.Generator, user: DemoUser) -> int:
    """Ask for decisions, then post one session's events; returns the number of events."""
    ids = {"anonymous_id": user.anonymous_id}
    if user.identified:
        ids["user_id"] = user.user_id
    client.post("/v1/decide", json={**ids, "placements": PLACEMENTS})
    # the session happened just now: its last event must not lie in the future
    events = simulate_session(rng, user, datetime.now(UTC) - timedelta(minutes=3))
    now = datetime.now(UTC)
    events = [e for e in _iso(events) if _at(e["timestamp"]) <= now]
    if events:
        client.post("/v1/events", json=events)
    return len(events)


def run(url: str, key: str, rate: float, seed: int, duration: float | None = None) -> None:
    """Post about ``rate`` sessions per second until stopped (or ``duration`` seconds)."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    seen: list[DemoUser] = []
    stop = time.monotonic() + duration if duration else float("inf")
    headers = {"Authorization": f"Bearer {key}"}
    # stop with the process that started us (uvicorn may end `tailorkit demo` without cleanup)
    parent = os.getppid()
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        while time.monotonic() < stop and os.getppid() == parent:
            returning = seen and pick.random() < 0.4
            user = pick.choice(seen) if returning else new_user(rng, FIRST_NUMBER + len(seen))
            if not returning:
                seen.append(user)
            try:
                one_session(client, rng, user)
            except httpx.HTTPError:
                time.sleep(1.0)  # the server is starting or restarting: try again later
            time.sleep(pick.expovariate(rate))


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--rate", type=float, default=2.0, help="sessions per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    args = parser.parse_args()
    run(args.url, args.key, args.rate, args.seed, args.duration)


if __name__ == "__main__":
    main()
