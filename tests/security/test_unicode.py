"""Unicode edge cases in ids, property keys and values: over HTTP and ``tailorkit ingest``.

Each line is stored verbatim (read back from the store) or refused with a
reason, never a 5xx, and the HTTP (NDJSON) and bulk file paths agree line by
line. The server stores into a throwaway PostgreSQL database, so the test
reads the store while it runs (and PostgreSQL's own text rules are covered).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailorkit.store.warehouse import Warehouse
from tests.conftest import LiveServer, start_server, throwaway_database
from tests.helpers import event
from tests.security.test_sql_injection import _admin_project, cli

LONG_CLUSTER = "a" + "\u0301" * 150  # one grapheme, 151 code points
#: (user_id, property key, property value) as JSON text, and the Python values when stored
CASES: list[tuple[bytes, bytes, bytes, tuple[str, str, str] | None]] = [
    (
        b'"u-emoji-\\ud83d\\ude00"',
        b'"k\\ud83d\\udc69\\u200d\\ud83d\\udcbb"',
        b'"\\ud83c\\uddea\\ud83c\\uddfa"',
        ("u-emoji-\U0001f600", "k\U0001f469\u200d\U0001f4bb", "\U0001f1ea\U0001f1fa"),
    ),
    (
        b'"u-rtl-\\u202eevil"',
        b'"\\u202ekey"',
        b'"abc\\u202edef\\u2066x"',
        ("u-rtl-\u202eevil", "\u202ekey", "abc\u202edef\u2066x"),
    ),
    (
        b'"u-nfd-e\\u0301"',
        b'"caf\\u0065\\u0301"',
        b'"e\\u0301"',
        ("u-nfd-e\u0301", "cafe\u0301", "e\u0301"),
    ),
    (b'"u-nfc-\\u00e9"', b'"caf\\u00e9"', b'"\\u00e9"', ("u-nfc-\u00e9", "caf\u00e9", "\u00e9")),
    (
        json.dumps(LONG_CLUSTER).encode(),
        b'"long"',
        json.dumps(LONG_CLUSTER * 20).encode(),
        (LONG_CLUSTER, "long", LONG_CLUSTER * 20),
    ),
    (b'"u-nul-value"', b'"n\\u0000k"', b'"a\\u0000b"', ("u-nul-value", "n\x00k", "a\x00b")),
    (
        '"u-raw-utf8-ü€𝄞"'.encode(),
        '"ключ"'.encode(),
        '"值"'.encode(),
        ("u-raw-utf8-ü€𝄞", "ключ", "值"),
    ),
    (b'"u-nul-\\u0000"', b'"k"', b'"v"', None),  # NUL in an id: refused
    (b'"u-lone-\\ud800"', b'"k"', b'"v"', None),  # lone surrogates: not valid JSON
    (b'"u-lone-key"', b'"\\udfff"', b'"v"', None),
    (b'"u-lone-value"', b'"k"', b'"x\\ud800"', None),
    (b'"u-bad-bytes-\xff\xfe"', b'"k"', b'"v"', None),  # not UTF-8
    (b'"u-bad-value"', b'"k"', b'"\xc3\x28"', None),
]


def _line(case: tuple[bytes, bytes, bytes, Any], tag: str) -> bytes:
    uid, key, value, _ = case
    return (
        b'{"event_id":"' + f"{tag}-{uuid.uuid4()}".encode() + b'","type":"page_view",'
        b'"user_id":' + uid + b',"timestamp":"2026-11-20T10:00:00Z",'
        b'"properties":{' + key + b":" + value + b"}}"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("unicode")
    root = _admin_project(folder)
    with throwaway_database("tk_unicode") as url:
        settings = yaml.safe_load((root / "tailorkit.yaml").read_text())
        settings["store"]["url"] = url
        (root / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
        live = start_server(root, folder / "server.log")
        yield live
        live.stop()


def _stored(url: str, tag: str) -> dict[str, tuple[str, str, str]]:
    wh = Warehouse(url)
    try:
        rows = wh.events.filter(wh.events.event_id.startswith(tag)).to_pyarrow().to_pylist()
    finally:
        wh.close()
    out = {}
    for row in rows:
        ((key, value),) = json.loads(row["properties"]).items()
        out[row["user_id"]] = (row["user_id"], key, value)
    return out


def test_http_and_bulk_file_store_the_same_or_refuse_the_same(
    server: LiveServer, tmp_path: Path
) -> None:
    body = b"\n".join(_line(c, "http") for c in CASES)
    with server.client(headers=server.ingest_headers) as client:
        r = client.post(
            "/v1/events", content=body, headers={"content-type": "application/x-ndjson"}
        )
    assert r.status_code == 200, r.text
    http = r.json()
    expected = ["rejected" if c[3] is None else "accepted" for c in CASES]
    assert http["statuses"] == expected, http["errors"]
    assert all(e["reason"] for e in http["errors"])

    (tmp_path / "events.ndjson").write_bytes(b"\n".join(_line(c, "file") for c in CASES) + b"\n")
    code, bulk = cli(
        "ingest", str(tmp_path / "events.ndjson"), "--project", str(server.project.root)
    )
    assert code == 0, bulk
    assert bulk["accepted"] == http["accepted"]
    assert [e["line"] - 1 for e in bulk["errors"]] == [e["index"] for e in http["errors"]]

    url = server.project.settings.store_url
    wanted = {c[3][0]: c[3] for c in CASES if c[3] is not None}
    assert _stored(url, "http") == wanted  # verbatim: no normalization, no replacement
    assert _stored(url, "file") == wanted


def test_json_array_bodies_refuse_lone_surrogates_and_bad_bytes(server: LiveServer) -> None:
    good = json.dumps(event(user_id="u-array")).encode()
    with server.client(headers=server.ingest_headers) as client:
        for bad in (_line(CASES[8], "arr"), _line(CASES[11], "arr")):
            r = client.post("/v1/events", content=b"[" + good + b"," + bad + b"]")
            assert r.status_code == 422 and r.json()["detail"], r.text
        r = client.post("/v1/events", content=b"[" + good + b"," + _line(CASES[1], "arr") + b"]")
        assert r.status_code == 200 and r.json()["accepted"] == 2
