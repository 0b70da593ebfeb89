"""Dump what ``SegmentEngine`` emits on the online benchmark's events, to compare two versions.

Run it once per checkout and compare the files byte for byte::

    git worktree add /tmp/old HEAD~3
    PYTHONPATH=/tmp/old/src python benchmarks/segments_equivalence.py /tmp/old.txt
    PYTHONPATH=src python benchmarks/segments_equivalence.py /tmp/new.txt
    cmp /tmp/old.txt /tmp/new.txt

The input is ``segments.py``'s online part (the demo shop, 5,000 visitors
over 14 days, batches of 1,000, the example definitions). Written: every
membership change in order (person, known, segment, entered/exited, time,
reason), then per person their features, segments, consent, bot flag and
next wake, then the changes of moving the clock 40 days on, then the sizes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))

from segments import BATCH, definitions, generate_shop, stored
from tailorkit.segment.online import Change, SegmentEngine

DAY_US = 86_400_000_000


def line(change: Change) -> bytes:
    c = change
    return orjson.dumps([c.person, c.known, c.segment, c.kind, c.ts_us, c.reason]) + b"\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    events = stored(generate_shop(args.users, args.days, args.seed).events)
    engine = SegmentEngine(definitions())
    with args.out.open("wb") as out:
        for start in range(0, events.num_rows, BATCH):
            for change in engine.process(events.slice(start, BATCH)):
                out.write(line(change))
        for person in sorted(engine.store.persons()):
            p = engine.store.get(person)
            assert p is not None
            state = [person, engine.features(person), engine.members(person), p.known,
                     p.consent, p.bot, p.wake]  # fmt: skip
            out.write(orjson.dumps(state) + b"\n")
        for change in engine.advance_to(engine.clock_us + 40 * DAY_US):
            out.write(line(change))
        out.write(orjson.dumps(engine.sizes()) + b"\n")


if __name__ == "__main__":
    main()
