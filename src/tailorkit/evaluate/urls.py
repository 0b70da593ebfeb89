"""URL targeting for inline experiments (``url`` and ``urlPatterns``).

Feature rules never carry URL targeting; inline experiments may.  The
behaviour follows the JavaScript SDK: a ``url`` regex matches the full URL or
its path, ``urlPatterns`` of type ``regex`` or ``simple`` (``*`` wildcards,
host/path/hash/query compared separately, case-insensitive) with exclusions
winning over inclusions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

from tailorkit.evaluate.safe_regex import compile_js_regex

__all__ = ["is_url_targeted", "url_matches_regex"]

_SCHEME = re.compile(r"^https?://")
_HOST = re.compile(r"^[^/]*/")
_SPECIAL = re.compile(r"[*.+?^${}()|\[\]\\]")


def url_matches_regex(url: str, pattern: str) -> bool:
    """Old-style ``experiment.url``: the regex matches the URL or its path.

    >>> url_matches_regex("https://shop.example/cart?x=1", "^/cart")
    True
    """
    if not url:
        return False
    regex = compile_js_regex(pattern)
    if regex is None:
        return False
    path_only = _HOST.sub("/", _SCHEME.sub("", url), count=1)
    return regex.test(url) or regex.test(path_only)


def _parts(url: str) -> dict[str, Any]:
    split = urlsplit(urljoin("https://_/", url))
    return {
        "host": split.netloc.lower(),
        "path": split.path or "/",
        "hash": "#" + split.fragment if split.fragment else "",
        "query": dict(parse_qsl(split.query, keep_blank_values=True)),
        "href": split.geturl(),
        "origin": f"{split.scheme}://{split.netloc}",
    }


def _simple_part(actual: str, pattern: str, is_path: bool) -> bool:
    escaped = _SPECIAL.sub(lambda m: "\\" + m.group(0), pattern).replace("_____", ".*")
    if is_path:
        escaped = "\\/?" + re.sub(r"^/|/$", "", escaped) + "\\/?"
    try:
        return re.fullmatch(escaped, actual, re.IGNORECASE) is not None
    except re.error:
        return False


def _simple_target(actual: dict[str, Any], pattern: str) -> bool:
    with_scheme = re.sub(r"^([^:/?]*)\.", r"https://\1.", pattern, count=1, flags=re.I)
    expected = _parts(urljoin("https://_____/", with_scheme.replace("*", "_____")))
    checks = [(actual["host"], expected["host"], False), (actual["path"], expected["path"], True)]
    if expected["hash"]:
        checks.append((actual["hash"], expected["hash"], False))
    for key, value in expected["query"].items():
        checks.append((actual["query"].get(key, ""), value, False))
    return all(_simple_part(a, e, p) for a, e, p in checks)


def _target_matches(url: str, kind: Any, pattern: Any) -> bool:
    if not isinstance(pattern, str):
        return False
    actual = _parts(url)
    if kind == "regex":
        regex = compile_js_regex(pattern)
        if regex is None:
            return False
        return regex.test(actual["href"]) or regex.test(actual["href"][len(actual["origin"]) :])
    if kind == "simple":
        return _simple_target(actual, pattern)
    return False


def is_url_targeted(url: str, targets: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``url`` passes ``urlPatterns`` (exclusions win).

    >>> is_url_targeted("https://example.com/home",
    ...                 [{"type": "simple", "include": True, "pattern": "example.com/home"}])
    True
    """
    if not targets:
        return False
    has_include = included = False
    for target in targets:
        match = _target_matches(url, target.get("type"), target.get("pattern"))
        if target.get("include") is False:
            if match:
                return False
        else:
            has_include = True
            included = included or match
    return included or not has_include
