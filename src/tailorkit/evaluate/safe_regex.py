"""JavaScript-flavoured regular expressions with a bounded running time.

GrowthBook's ``$regex``/``$regexi`` operators carry JavaScript patterns, and
the subject is usually attacker-controlled (a user agent, a URL).  Python's
``re`` backtracks without a time limit, so this module does three things:

1. **Translate** the JavaScript syntax that differs from Python's: ``.``
   excludes ``\\r``, U+2028 and U+2029 too; ``$`` matches only at the very
   end; ``\\d``, ``\\w`` and ``\\b`` are ASCII-only; ``\\s`` is JavaScript's
   whitespace set; ``(?<name>`` and ``\\k<name>`` are named groups; ``\\cX``
   is a control character; ``[^]`` and ``[]`` are "any" and "nothing"; an
   escaped letter without a meaning (``\\q``) is the letter itself.
   Remaining differences (variable-width lookbehind, ``\\D``/``\\W``/``\\S``
   inside a character class, Unicode case folding for ``$regexi``) are rare
   in targeting rules and documented here rather than emulated.
2. **Reject exponential patterns** at compile time: a repeated group whose
   body itself contains a quantifier or an alternation (``(a+)+``,
   ``(a|ab)*``, ``(\\w+\\s?)*``) — the "star height > 1" shapes behind
   catastrophic backtracking.  An alternation of plain literals with distinct
   first characters (``(Mobile|Tablet)+``) is allowed: at most one branch
   can match at any position.  A rejected pattern never matches (the
   operator is false), like an invalid pattern.
3. **Bound polynomial patterns** at match time.  With no nested repeats the
   backtracking work is at most about ``len(subject) ** d`` steps, where
   ``d`` counts the unbounded quantifiers (plus one start position factor
   for an unanchored search).  A subject is tested only if that bound stays
   under :data:`STEP_BUDGET` and it is at most :data:`MAX_SUBJECT_LENGTH`
   characters; a longer subject does not match.

Patterns are compiled once and cached (:func:`compile_js_regex`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_SUBJECT_LENGTH",
    "STEP_BUDGET",
    "JsRegex",
    "compile_js_regex",
    "translate_js_regex",
]

#: Longer patterns are rejected outright.
MAX_PATTERN_LENGTH = 1024
#: Longer subjects never match.
MAX_SUBJECT_LENGTH = 4096
#: Worst-case backtracking steps allowed for one test.
STEP_BUDGET = 2_000_000
# A bounded quantifier with a larger maximum counts as unbounded
_LARGE_REPEAT = 16

_JS_SPACE = (
    "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
)
_OUTSIDE_CLASS = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": "[A-Za-z0-9_]",
    "W": "[^A-Za-z0-9_]",
    "s": "[" + _JS_SPACE + "]",
    "S": "[^" + _JS_SPACE + "]",
    "b": "(?a:\\b)",
    "B": "(?a:\\B)",
}
_INSIDE_CLASS = {"d": "0-9", "w": "A-Za-z0-9_", "s": _JS_SPACE, "b": "\\x08"}
# Escapes that mean the same in both dialects
_SHARED_ESCAPES = set("nrtfv0123456789xuDWS")
_QUANTIFIER = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")


class UnsafePatternError(ValueError):
    """The pattern could backtrack exponentially (or is too long)."""


@dataclass
class _Group:
    has_repeat: bool = False
    has_alternation: bool = False
    # Only literal characters so far, and the first character of each branch
    literal: bool = True
    firsts: list[str | None] = field(default_factory=lambda: [None])

    def add_literal(self, char: str) -> None:
        if self.firsts[-1] is None:
            self.firsts[-1] = char.lower()

    def deterministic_alternation(self) -> bool:
        """Literal branches with distinct first characters: at most one can match."""
        firsts = self.firsts
        return self.literal and None not in firsts and len(set(firsts)) == len(firsts)


@dataclass
class _Translation:
    parts: list[str]
    stack: list[_Group]
    unbounded: int = 0
    last_group: _Group | None = None


def translate_js_regex(pattern: str) -> tuple[str, int]:
    """Translate a JavaScript pattern to Python; return it and its repeat degree.

    The degree is the number of unbounded quantifiers, used to bound the
    subject length.  Raises :class:`UnsafePatternError` for nested repeats.

    >>> translate_js_regex("^a.c$")
    ('^a[^\\\\n\\\\r\\\\u2028\\\\u2029]c\\\\Z', 0)
    >>> try:
    ...     translate_js_regex("(a+)+")
    ... except UnsafePatternError as exc:
    ...     print(exc)
    nested repeat in '(a+)+'
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsafePatternError("pattern too long")
    state = _Translation(parts=[], stack=[_Group()])
    i = 0
    while i < len(pattern):
        i = _translate_token(pattern, i, state)
    return "".join(state.parts), state.unbounded


def _translate_token(pattern: str, i: int, state: _Translation) -> int:
    """Translate the token at ``pattern[i]``; return the next index."""
    ch = pattern[i]
    if ch == "\\":
        return _translate_escape(pattern, i, state)
    if ch == "[":
        return _translate_class(pattern, i, state)
    if ch == "(":
        return _open_group(pattern, i, state)
    if ch == ")":
        group = state.stack.pop() if len(state.stack) > 1 else _Group()
        state.parts.append(")")
        state.last_group = group
        state.stack[-1].literal = False
        if group.has_repeat:
            state.stack[-1].has_repeat = True
        return i + 1
    if ch in "*+?" or (ch == "{" and _QUANTIFIER.match(pattern, i)):
        return _quantifier(pattern, i, state)
    state.last_group = None
    group = state.stack[-1]
    if ch == "|":
        group.has_alternation = True
        group.firsts.append(None)
        state.parts.append("|")
        return i + 1
    if ch == "." or ch == "$" or ch == "^" or ch == "{" or ch == "}":
        group.literal = False
    else:
        group.add_literal(ch)
    if ch == ".":
        state.parts.append("[^\\n\\r\\u2028\\u2029]")
    elif ch == "$":
        state.parts.append("\\Z")
    elif ch == "{" or ch == "}":
        state.parts.append("\\" + ch)
    else:
        state.parts.append(ch)
    return i + 1


def _translate_escape(pattern: str, i: int, state: _Translation) -> int:
    state.last_group = None
    if i + 1 >= len(pattern):
        raise re.error("trailing backslash")  # an error in JavaScript too
    nxt = pattern[i + 1]
    if nxt in _OUTSIDE_CLASS:
        state.parts.append(_OUTSIDE_CLASS[nxt])
    elif nxt == "k" and pattern.startswith("<", i + 2) and ">" in pattern[i + 3 :]:
        end = pattern.index(">", i + 3)
        state.parts.append("(?P=" + pattern[i + 3 : end] + ")")
        return end + 1
    elif (
        nxt == "c"
        and i + 2 < len(pattern)
        and pattern[i + 2].isascii()
        and pattern[i + 2].isalpha()
    ):
        state.parts.append("\\x%02x" % (ord(pattern[i + 2]) % 32))
        return i + 3
    elif not nxt.isalnum():
        state.stack[-1].add_literal(nxt)
        state.parts.append("\\" + nxt)
        return i + 2
    elif nxt in _SHARED_ESCAPES:
        state.parts.append("\\" + nxt)
    else:
        state.stack[-1].add_literal(nxt)
        state.parts.append(re.escape(nxt))  # JS reads "\q" as "q"
        return i + 2
    state.stack[-1].literal = False
    return i + 2


def _translate_class(pattern: str, i: int, state: _Translation) -> int:
    state.last_group = None
    state.stack[-1].literal = False
    if pattern.startswith("[^]", i):
        state.parts.append("[\\s\\S]")
        return i + 3
    if pattern.startswith("[]", i):
        state.parts.append("(?!)")
        return i + 2
    out = ["["]
    j = i + 1
    if pattern.startswith("^", j):
        out.append("^")
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        c = pattern[j]
        if c == "\\" and j + 1 < len(pattern):
            nxt = pattern[j + 1]
            if nxt in _INSIDE_CLASS:
                out.append(_INSIDE_CLASS[nxt])
            elif nxt in _SHARED_ESCAPES or not nxt.isalnum() or nxt == "c":
                out.append("\\" + nxt)
            else:
                out.append(re.escape(nxt))
            j += 2
            continue
        # Python warns about (future) set operations on these characters
        out.append("\\" + c if c in "[&~|" else c)
        j += 1
    if j >= len(pattern):
        raise re.error("unterminated character class")
    out.append("]")
    state.parts.append("".join(out))
    return j + 1


def _open_group(pattern: str, i: int, state: _Translation) -> int:
    state.last_group = None
    state.stack[-1].literal = False
    state.stack.append(_Group())
    for prefix in ("(?:", "(?=", "(?!", "(?<=", "(?<!"):
        if pattern.startswith(prefix, i):
            state.parts.append(prefix)
            return i + len(prefix)
    if pattern.startswith("(?<", i):
        state.parts.append("(?P<")
        return i + 3
    state.parts.append("(")
    return i + 1


def _quantifier(pattern: str, i: int, state: _Translation) -> int:
    """Apply a quantifier, checking the star-height rule."""
    if pattern[i] == "{":
        match = _QUANTIFIER.match(pattern, i)
        assert match is not None
        low = int(match.group(1))
        high = low if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
        end = match.end()
    else:
        low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[pattern[i]]
        end = i + 1
    text = pattern[i:end]
    if end < len(pattern) and pattern[end] == "?":
        text += "?"
        end += 1
    repeats = high is None or high > 1
    group = state.last_group
    risky = group is not None and (
        group.has_repeat or (group.has_alternation and not group.deterministic_alternation())
    )
    if repeats and risky:
        raise UnsafePatternError(f"nested repeat in {pattern!r}")
    state.stack[-1].literal = False
    if high is None or high > _LARGE_REPEAT:
        state.unbounded += 1
    state.stack[-1].has_repeat = True
    state.last_group = None
    state.parts.append(text)
    return end


@dataclass(frozen=True)
class JsRegex:
    """A compiled, guarded JavaScript pattern.

    >>> rx = compile_js_regex("(Mobile|Tablet)")
    >>> rx is not None and rx.test("Android Mobile"), rx is not None and rx.test("Desktop")
    (True, False)
    """

    regex: re.Pattern[str]
    max_subject: int

    def test(self, subject: str) -> bool:
        """Return whether the pattern matches somewhere in ``subject``."""
        if len(subject) > self.max_subject:
            return False
        return self.regex.search(subject) is not None


def _max_subject(degree: int, anchored: bool) -> int:
    """Longest subject whose worst-case work stays under the step budget."""
    power = degree + (0 if anchored else 1)
    if power <= 1:
        return MAX_SUBJECT_LENGTH
    return min(MAX_SUBJECT_LENGTH, int(STEP_BUDGET ** (1.0 / power)))


@lru_cache(maxsize=4096)
def compile_js_regex(pattern: str, ignore_case: bool = False) -> JsRegex | None:
    """Compile a JavaScript pattern once; ``None`` if invalid or unsafe.

    >>> compile_js_regex("/???***[)") is None, compile_js_regex("(a*)*b") is None
    (True, True)
    """
    # In a search a leading ".*" can match the empty string, so dropping it
    # changes no result and removes one level of backtracking
    if pattern.startswith(".*?"):
        pattern = pattern[3:]
    elif pattern.startswith(".*") and not pattern.startswith((".**", ".*+", ".*{")):
        pattern = pattern[2:]
    try:
        translated, degree = translate_js_regex(pattern)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            regex = re.compile(translated, re.IGNORECASE if ignore_case else 0)
    except (re.error, UnsafePatternError, ValueError, OverflowError):
        return None
    # A trailing unbounded quantifier ("foo.*") adds no backtracking depth; before
    # "$" it does ("[a-z]+$" backtracks over the whole run when the end does not follow)
    if pattern.endswith(("*", "+")) and not pattern.endswith(("\\*", "\\+")) and degree > 0:
        degree -= 1
    return JsRegex(regex, _max_subject(degree, pattern.startswith("^")))
