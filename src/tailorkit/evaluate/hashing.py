"""Deterministic assignment: FNV-1a hashing, bucket ranges, variation choice.

Compatible with GrowthBook's SDKs (hash versions 1 and 2, FNV-1a 32-bit over
UTF-16 code units).  :class:`SeedHasher` is the fast path used by compiled
features: it precomputes everything that depends only on the seed.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Callable, Sequence

from tailorkit.evaluate.jsvalues import JS_WHITESPACE

__all__ = [
    "SeedHasher",
    "choose_variation",
    "fnv1a32",
    "get_bucket_ranges",
    "get_equal_weights",
    "get_query_string_override",
    "hash",
    "in_namespace",
    "in_range",
]

_OFFSET = 0x811C9DC5
_MASK = 0xFFFFFFFF
Range = tuple[float, float]


def _fnv_continue(state: int, text: str) -> int:
    """Feed ``text`` (as UTF-16 code units) into an FNV-1a state."""
    h = state
    if text.isascii():
        data = text.encode()
        if len(data) <= 32:
            # XOR with a byte and multiplication both commute with "mod 2**32",
            # so short inputs are masked once at the end (a third fewer steps)
            for unit in data:
                h = (h ^ unit) * 0x01000193
            return h & 0xFFFFFFFF
        for unit in data:
            h = ((h ^ unit) * 0x01000193) & 0xFFFFFFFF
        return h
    units = array("H", text.encode("utf-16-le", "surrogatepass"))
    if sys.byteorder == "big":
        units.byteswap()
    for unit in units:
        h = ((h ^ unit) * 0x01000193) & 0xFFFFFFFF
    return h


# FNV-1a states of str(q) for q < 2**32 // 100000, filled on first use (-1: not yet)
_DECIMAL_PREFIX = [-1] * (_MASK // 100000 + 1)


def _fnv_decimal(number: int) -> int:
    """``fnv1a32(str(number))`` for a 32-bit number (version 2's outer hash).

    The state after the leading digits ``number // 100000`` is memoized, so
    only the last five digits are hashed each time.
    """
    if number < 100000:
        return _fnv_continue(_OFFSET, str(number))
    head, tail = divmod(number, 100000)
    h = _DECIMAL_PREFIX[head]
    if h < 0:
        h = _DECIMAL_PREFIX[head] = _fnv_continue(_OFFSET, str(head))
    for unit in b"%05d" % tail:
        h = (h ^ unit) * 0x01000193
    return h & 0xFFFFFFFF


def fnv1a32(text: str) -> int:
    """FNV-1a 32-bit hash of a string's UTF-16 code units.

    >>> fnv1a32("hello")
    1335831723
    """
    return _fnv_continue(_OFFSET, text)


def hash(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's hash of ``value`` under ``seed``: a float in [0, 1).

    Version 1 is the original (biased, 1000 buckets); version 2 the unbiased
    one (10000 buckets); any other version gives ``None``.

    >>> hash("", "a", 1), hash("seed", "a", 2), hash("abc", "def", 99)
    (0.22, 0.0505, None)
    """
    if version == 2:
        return (_fnv_decimal(_fnv_continue(_OFFSET, seed + value)) % 10000) / 10000
    if version == 1:
        return (_fnv_continue(_OFFSET, value + seed) % 1000) / 1000
    return None


HashFn = Callable[[str, "dict[str, int] | None"], "float | None"]


class SeedHasher:
    """Hash many values under one seed, faster than :func:`hash`.

    Version 2 starts from the FNV state after the seed.  Version 1 hashes
    ``value + seed``; the state after ``value`` comes from a caller's cache
    (it is shared by every seed) and the seed is then applied in O(1): for a
    fixed suffix of code units below 256, FNV-1a maps a state ``h`` to
    ``((h >> 8) * M + G[h & 255]) mod 2**32`` (XOR only touches the low
    byte), so ``M`` and the 256-entry table ``G`` are precomputed.

    ``hasher.hash(value, prefix_cache)`` is a closure specialized for the
    version; ``prefix_cache`` memoizes FNV states of values (version 1).

    >>> hasher = SeedHasher("my-test", 1)
    >>> hasher.hash("1", {}) == hash("my-test", "1", 1)
    True
    """

    __slots__ = ("hash", "seed", "version")

    def __init__(self, seed: str, version: int) -> None:
        self.seed = seed
        self.version = version
        self.hash: HashFn
        if version == 2:
            self.hash = _v2_hasher(_fnv_continue(_OFFSET, seed))
        elif version == 1 and all(ord(c) < 256 for c in seed):
            self.hash = _v1_hasher(seed)
        elif version == 1:
            self.hash = lambda value, cache: (_fnv_continue(_OFFSET, value + seed) % 1000) / 1000
        else:
            self.hash = lambda value, cache: None


def _v2_hasher(seed_state: int) -> HashFn:
    prefixes = _DECIMAL_PREFIX

    def hash_v2(value: str, cache: dict[str, int] | None) -> float | None:
        # _fnv_continue and _fnv_decimal inlined: this is the hottest loop
        if value.isascii() and len(value) <= 32:
            h = seed_state
            for unit in value.encode():
                h = (h ^ unit) * 0x01000193
            inner = h & 0xFFFFFFFF
        else:
            inner = _fnv_continue(seed_state, value)
        if inner < 100000:
            return (_fnv_continue(_OFFSET, str(inner)) % 10000) / 10000
        head, tail = divmod(inner, 100000)
        h = prefixes[head]
        if h < 0:
            h = prefixes[head] = _fnv_continue(_OFFSET, str(head))
        for unit in b"%05d" % tail:
            h = (h ^ unit) * 0x01000193
        return ((h & 0xFFFFFFFF) % 10000) / 10000

    return hash_v2


def _v1_hasher(seed: str) -> HashFn:
    multiplier = (256 * pow(0x01000193, len(seed), 1 << 32)) & _MASK
    table = [_fnv_continue(low, seed) for low in range(256)]

    def hash_v1(value: str, cache: dict[str, int] | None) -> float | None:
        if cache is None:
            state = _fnv_continue(_OFFSET, value)
        else:
            state = cache.get(value, -1)
            if state < 0:
                state = cache[value] = _fnv_continue(_OFFSET, value)
        h = ((state >> 8) * multiplier + table[state & 255]) & 0xFFFFFFFF
        return (h % 1000) / 1000

    return hash_v1


def get_equal_weights(num_variations: int) -> list[float]:
    """Equal weights for ``num_variations`` variations (``[]`` if none).

    >>> get_equal_weights(4)
    [0.25, 0.25, 0.25, 0.25]
    """
    if num_variations <= 0:
        return []
    return [1 / num_variations] * num_variations


def normalized_weights(num_variations: int, weights: Sequence[float] | None) -> list[float]:
    """The weights bucketing uses: the given ones, or equal ones if invalid.

    Like the JavaScript SDK, weights are invalid when their count differs
    from the number of variations or their sum is outside [0.99, 1.01].

    >>> normalized_weights(2, [0.7, 0.6])
    [0.5, 0.5]
    """
    equal = get_equal_weights(num_variations)
    if not weights or len(weights) != num_variations:
        return equal
    try:
        total = sum(weights)
    except TypeError:
        return equal
    if total < 0.99 or total > 1.01:
        return equal
    return list(weights)


def get_bucket_ranges(
    num_variations: int,
    coverage: float | None = None,
    weights: Sequence[float] | None = None,
) -> list[Range]:
    """Bucket ranges for the variations: weight × coverage each, from its weight start.

    >>> get_bucket_ranges(2, 0.5)
    [(0, 0.25), (0.5, 0.75)]
    """
    cover = 1.0 if coverage is None else coverage
    cover = min(max(cover, 0), 1)
    cumulative: float = 0
    ranges = []
    for weight in normalized_weights(num_variations, weights):
        start = cumulative
        cumulative += weight
        ranges.append((start, start + cover * weight))
    return ranges


def in_range(n: float, bucket: Sequence[float]) -> bool:
    """Whether ``n`` falls in the half-open range ``[start, end)``.

    >>> in_range(0.5, (0.5, 1)), in_range(1, (0.5, 1))
    (True, False)
    """
    return bool(bucket[0] <= n < bucket[1])


def choose_variation(n: float, ranges: Sequence[Sequence[float]]) -> int:
    """Index of the range containing ``n``, or -1.

    >>> choose_variation(0.6, [(0, 0.5), (0.5, 1)]), choose_variation(0.3, [(0, 0.25)])
    (1, -1)
    """
    for index, bucket in enumerate(ranges):
        if bucket[0] <= n < bucket[1]:
            return index
    return -1


def in_namespace(hash_value: str, namespace: Sequence[object]) -> bool:
    """Whether a user is in the namespace slice ``[id, start, end]``.

    >>> in_namespace("1", ["namespace1", 0.4, 1])
    True
    """
    n = hash("__" + str(namespace[0]), hash_value, 1)
    if n is None:
        return False
    start, end = namespace[1], namespace[2]
    assert isinstance(start, (int, float)) and isinstance(end, (int, float))
    return start <= n < end


_ANCHOR = re.compile("#[^\n\r\u2028\u2029]*")
_PARSE_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|[0-9]+)")


def _parse_int(text: str) -> int | None:
    """JavaScript ``parseInt(text)``: leading integer, or ``None`` for NaN."""
    match = _PARSE_INT.match(text.lstrip(JS_WHITESPACE))
    if match is None:
        return None
    sign, digits = match.groups()
    value = int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits)
    return -value if sign == "-" else value


def get_query_string_override(key: str, url: str, num_variations: int) -> int | None:
    """Variation forced by ``?<key>=<n>`` in the URL, if valid.

    >>> get_query_string_override("my-test", "http://example.com?my-test=1#x", 2)
    1
    """
    if not url:
        return None
    pieces = url.split("?")
    if len(pieces) < 2 or not pieces[1]:
        return None
    search = _ANCHOR.sub("", pieces[1], count=1)
    for pair in search.split("&"):
        name, _, raw = pair.partition("=")
        if name != key:
            continue
        if "=" not in pair:
            return None
        value = _parse_int(raw.split("=")[0])
        if value is not None and 0 <= value < num_variations:
            return value
        return None
    return None
