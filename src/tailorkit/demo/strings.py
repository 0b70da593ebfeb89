"""Column-wise string building: random ids and JSON fragments without a Python loop."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Two hex characters per byte value, so one gather converts a byte to its text.
_HEX_PAIRS = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)


def join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate string columns and constants row by row."""
    return pc.binary_join_element_wise(*parts, "")


def numbers(values: np.ndarray) -> pa.Array:
    """Numbers as JSON number text (shortest round-trip form, e.g. ``59.9``)."""
    return pc.cast(pa.array(values), pa.string())


def hex_chars(raw: np.ndarray) -> np.ndarray:
    """Lowercase hex text of an ``(n, k)`` byte array as an ``(n, 2k)`` array of ASCII codes."""
    return _HEX_PAIRS[raw].view(np.uint8).reshape(raw.shape[0], raw.shape[1] * 2)


def fixed_width(chars: np.ndarray) -> pa.Array:
    """A string array from an ``(n, width)`` array of ASCII codes, without Python objects."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    data = pa.py_buffer(np.ascontiguousarray(chars))
    array = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), data])
    return array.cast(pa.string()) if n * width < 2**31 else array


def hex_strings(rng: np.random.Generator, n: int, n_bytes: int) -> pa.Array:
    """``n`` random lowercase hex strings of ``2 * n_bytes`` characters."""
    raw = np.frombuffer(rng.bytes(n * n_bytes), dtype=np.uint8).reshape(n, n_bytes)
    return fixed_width(hex_chars(raw))


def uuid4_strings(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` RFC 4122 version-4 UUIDs drawn from ``rng`` (reproducible, unlike uuid.uuid4)."""
    raw = np.frombuffer(rng.bytes(n * 16), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = hex_chars(raw)
    chars = np.full((n, 36), ord("-"), dtype=np.uint8)
    # 8-4-4-4-12 groups: (start in hex text, start in UUID text, width)
    for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
        chars[:, dst : dst + width] = hexed[:, src : src + width]
    return fixed_width(chars)
