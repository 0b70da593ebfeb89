"""Property tests of the condition evaluator on hostile input: no crash, no hang.

Conditions and attribute documents are arbitrary JSON (operators mixed with
junk), so every evaluation must return a bool and never raise. Regex
operators get patterns built from the pieces behind catastrophic
backtracking (nested and adjacent repeats, overlapping alternations) and
long adversarial subjects; each evaluation must finish within a time bound.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailorkit.evaluate.conditions import compile_condition
from tailorkit.evaluate.safe_regex import MAX_SUBJECT_LENGTH, compile_js_regex

OPERATORS = [
    "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$all", "$size",
    "$elemMatch", "$exists", "$type", "$not", "$regex", "$regexi", "$vgt", "$vlt",
    "$veq", "$ini", "$alli", "$inGroup", "$notInGroup", "$or", "$and", "$nor", "$bogus",
]  # fmt: skip
#: one evaluation, however hostile, within this many seconds (about 10x the worst seen)
TIME_BOUND = 0.5

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "0", "1.2.3", "NaN", "\ud800", "\x00", "a" * 50]),
)
keys = st.one_of(st.sampled_from(OPERATORS), st.sampled_from(["a", "b", "a.b", "a.0", ""]))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=25,
)
attributes = st.dictionaries(st.sampled_from(["a", "b", "id", "segments"]), json_values)

REGEX_PIECES = [
    "a", "b", "a+", "a*", "(a+)+", "(a|a)*", "(a|ab)*", "(\\w+\\s?)*", "(.*)*", ".*",
    "\\d+", "[a-z]+", "(?:a+)+", "a{1,100}", "(a{2,}){2,}", "(?=a)", "$", "^", "|",
    "(", ")", "[", "]", "\\", "?", "{", "}", "(?<n>a)\\k<n>", "\\1",
]  # fmt: skip
patterns = st.lists(st.sampled_from(REGEX_PIECES), min_size=1, max_size=8).map("".join)
subjects = st.builds(
    lambda char, n, tail: char * n + tail,
    st.sampled_from(["a", "ab", " ", "1"]),
    st.integers(0, MAX_SUBJECT_LENGTH + 10),
    st.sampled_from(["", "!", "b", "\n"]),
)


def _timed(predicate: Any, document: Any) -> bool:
    started = time.perf_counter()
    result = predicate(document)
    elapsed = time.perf_counter() - started
    assert elapsed < TIME_BOUND, f"evaluation took {elapsed:.2f} s"
    return bool(result)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(condition=json_values, document=attributes)
def test_any_condition_on_any_document_is_a_bool(condition: Any, document: Any) -> None:
    result = compile_condition(condition, {"g": [1, "a"]})(document)
    assert isinstance(result, bool)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=patterns, subject=subjects, ignore_case=st.booleans())
def test_regex_conditions_finish_within_a_bound(
    pattern: str, subject: str, ignore_case: bool
) -> None:
    op = "$regexi" if ignore_case else "$regex"
    predicate = compile_condition({"s": {op: pattern}})
    _timed(predicate, {"s": subject})
    compiled = compile_js_regex(pattern, ignore_case)
    if compiled is not None and len(subject) > compiled.max_subject:
        assert compiled.test(subject) is False  # too long for the budget: no match, no work


def test_catastrophic_patterns_on_long_inputs_are_bounded() -> None:
    nested = ("(a+)+$", "(a|aa)+$", "(a*)*b", "^(\\w+\\s?)*$", "(.*a){12}", "(x+x+)+y")
    # polynomial, cubic: took 1.3 s on 200 characters while "+$" was counted as free
    cubic = ("(a|b)a*.*(a|b)[a-z]+$",)
    for pattern in nested + cubic:
        for subject in ("a" * 5000 + "!", "a" * 201 + "!", "a" * 30 + "!", "x" * 4000):
            assert _timed(compile_condition({"s": {"$regex": pattern}}), {"s": subject}) is False
