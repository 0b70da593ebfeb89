"""Skipping a segment's re-evaluation is safe: if no atom flips, the condition cannot."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tailorkit.evaluate.conditions import compile_condition, eval_condition
from tailorkit.segment.online import _compile_match
from tailorkit.segment.triggers import atoms, flips

numbers = st.one_of(st.none(), st.integers(-3, 12), st.sampled_from([0.5, 2.5, 7.0, 9.99]))
literals = st.one_of(
    st.integers(-2, 10), st.sampled_from([0.5, 2.5, "3", "x", "", True, False, None])
)


@st.composite
def leaf(draw: st.DrawFn) -> Any:
    op = draw(st.sampled_from(["plain", "$gt", "$gte", "$lt", "$lte", "$eq", "$ne", "$in",
                               "$nin", "$exists", "$type", "$not"]))  # fmt: skip
    if op == "plain":
        return draw(literals)
    if op in ("$in", "$nin"):
        return {op: draw(st.lists(literals, max_size=3))}
    if op == "$exists":
        return {op: draw(st.booleans())}
    if op == "$type":
        return {op: draw(st.sampled_from(["number", "null", "string"]))}
    if op == "$not":
        return {op: draw(leaf())}
    return {op: draw(literals)}


@st.composite
def condition(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and draw(st.integers(0, 4)) == 0:
        key = draw(st.sampled_from(["$or", "$and", "$nor"]))
        return {key: draw(st.lists(condition(depth + 1), max_size=3))}
    out = {"f": draw(leaf())}
    if draw(st.booleans()):
        out["g"] = draw(leaf())
    return out


@settings(max_examples=2000, deadline=None)
@given(condition(), numbers, numbers, numbers)
def test_no_flipping_atom_means_no_flipping_condition(
    cond: dict[str, Any], old: Any, new: Any, other: Any
) -> None:
    found = atoms(cond, "f")
    if found is None or flips(found, old, new):
        return  # the executor re-evaluates: nothing to check
    before = eval_condition({"f": old, "g": other}, cond)
    after = eval_condition({"f": new, "g": other}, cond)
    assert before == after, (found, old, new)


values = st.one_of(numbers, st.sampled_from(["3", "x", "", True, False, float("nan"), [1]]))


@settings(max_examples=2000, deadline=None)
@given(condition(), st.booleans(), values, values)
def test_inlined_conditions_match_the_compiled_predicate(
    cond: dict[str, Any], negate: bool, f: Any, g: Any
) -> None:
    """The engine's generated match (numeric comparisons inlined) agrees with the evaluator."""
    if negate:
        cond = {"$not": cond}
    match = _compile_match([(2, cond, compile_condition(cond))], ())
    cache = {"f": f, "g": g}
    assert match(cache) == (4 if eval_condition(cache, cond) else 0), cond


def test_exclusive_groups_keep_the_first_member_matched() -> None:
    yes, no = {"f": {"$gte": 0}}, {"f": {"$lt": 0}}
    tests = [(b, c, compile_condition(c)) for b, c in [(0, no), (1, yes), (2, yes), (3, yes)]]
    match = _compile_match(tests, ((0, 1, 2), (3,)))
    assert match({"f": 1}) == 0b1010
