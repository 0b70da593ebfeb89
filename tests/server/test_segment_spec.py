"""Segment tracking-API payloads, built from Segment's public spec, stored correctly.

Every common field (anonymousId, context, integrations, messageId, sentAt,
timestamp, originalTimestamp, type, userId, version) and every context field the
spec lists is sent; the test checks the mapping into tailorkit's event model.
"""

from __future__ import annotations

import base64
import json
import uuid

from tailorkit.store.warehouse import Warehouse
from tests.conftest import LiveServer

CONTEXT = {
    "active": True,
    "app": {"name": "InitechGlobal", "version": "545", "build": "3.0.1.545", "namespace": "com.x"},
    "campaign": {
        "name": "TPS Innovation Newsletter",
        "source": "Newsletter",
        "medium": "email",
        "term": "tps reports",
        "content": "image link",
    },
    "device": {
        "id": "B5372DB0-C21E-11E4-8DFC-AA07A5B093DB",
        "advertisingId": "7A3CBEA0-BDF5-11E4-8DFC-AA07A5B093DB",
        "adTrackingEnabled": True,
        "manufacturer": "Apple",
        "model": "iPhone7,2",
        "name": "maguro",
        "type": "ios",
        "token": "ff15bc0c20c4aa6cd50854ff165fd265c838e5405bfeb9571066395b8c9da449",
    },
    "ip": "8.8.8.8",
    "library": {"name": "analytics.js", "version": "2.11.1"},
    "locale": "nl-NL",
    "location": {
        "city": "San Francisco",
        "country": "United States",
        "latitude": 40.2964197,
        "longitude": -76.9411617,
        "region": "CA",
        "speed": 0,
    },
    "network": {"bluetooth": False, "carrier": "T-Mobile US", "cellular": True, "wifi": False},
    "os": {"name": "iPhone OS", "version": "8.1.3"},
    "page": {
        "path": "/academy/",
        "referrer": "",
        "search": "",
        "title": "Analytics Academy",
        "url": "https://segment.com/academy/",
    },
    "referrer": {"id": "ABCD582CDEFFFF01919", "type": "dataxu"},
    "screen": {"width": 320, "height": 568, "density": 2},
    "groupId": "12345",
    "timezone": "Europe/Amsterdam",
    "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 9_1 like Mac OS X) Mobile/13B143",
    "userAgentData": {
        "brands": [{"brand": "Chromium", "version": "110"}],
        "mobile": True,
        "platform": "macOS",
    },
    "traits": {"email": "peter@example.com", "plan": "premium"},
    "channel": "browser",
}


def common(call: str, **fields: object) -> dict:
    return {
        "type": call,
        "messageId": f"ajs-{uuid.uuid4()}",
        "anonymousId": "507f191e810c19729de860ea",
        "userId": "97980cfea0067",
        "context": CONTEXT,
        "integrations": {"All": True, "Mixpanel": False},
        "timestamp": "2026-11-20T10:00:00.000Z",
        "originalTimestamp": "2026-11-20T10:00:00.000Z",
        "sentAt": "2026-11-20T10:00:01.000Z",
        "receivedAt": "2026-11-20T10:00:02.000Z",
        "version": 2,
        **fields,
    }


def basic_auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_segment_calls_are_stored_with_their_fields(live_server: LiveServer) -> None:
    key = live_server.project.settings.ingest_keys[0]
    track = common(
        "track",
        event="Order Completed",
        properties={"order_id": "50314b8e", "revenue": 25.0, "currency": "USD"},
    )
    custom = common("track", event="Video Played", properties={"position": 3})
    identify = common(
        "identify",
        traits={"email": "peter@example.com", "name": "Peter Gibbons", "plan": "premium"},
    )
    page = common("page", name="Home", category="Docs", properties={"title": "Welcome", "url": "/"})
    alias = common("alias", previousId="39239-239239-239239-23923", userId="507f191e81")
    batch = {
        "batch": [
            common("track", event="Product Viewed", properties={"product_id": "p1"}),
            common("screen", name="Cart", properties={}),
            {"type": "group", "messageId": "g1"},
        ],
        "context": {"device": {"type": "phone"}},
        "integrations": {"All": False},
    }
    with live_server.client() as client:
        for call, body in (
            ("track", track),
            ("track", custom),
            ("identify", identify),
            ("page", page),
            ("alias", alias),
        ):
            r = client.post(f"/v1/segment/{call}", json=body, headers=basic_auth(key))
            assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        r = client.post("/v1/segment/batch", json=batch, headers=basic_auth(key))
        assert r.json()["statuses"] == ["accepted", "accepted", "rejected"]
        assert "unknown Segment call 'group'" in r.json()["errors"][0]["reason"]
    live_server.stop()
    wh = Warehouse(live_server.project.settings.store_url)
    rows = {r["event_id"]: r for r in wh.events.to_pyarrow().to_pylist()}

    stored = rows[track["messageId"]]
    assert stored["type"] == "purchase"
    assert (
        stored["user_id"] == "97980cfea0067"
        and stored["anonymous_id"] == "507f191e810c19729de860ea"
    )
    props = json.loads(stored["properties"])
    assert props == {
        "order_id": "50314b8e",
        "revenue": 25.0,
        "currency": "USD",
        "segment_event": "Order Completed",
    }
    ctx = json.loads(stored["context"])
    assert ctx["utm"] == {
        "source": "Newsletter",
        "medium": "email",
        "term": "tps reports",
        "content": "image link",
        "campaign": "TPS Innovation Newsletter",
    }
    assert ctx["user_agent"] == CONTEXT["userAgent"]
    assert ctx["integrations"] == {"All": True, "Mixpanel": False}
    assert ctx["ip"] == "8.8.8.0"
    assert ctx["traits"]["plan"] == "premium" and ctx["traits"]["email"] != "peter@example.com"
    for field in (
        "app",
        "device",
        "library",
        "locale",
        "location",
        "network",
        "os",
        "page",
        "referrer",
        "screen",
        "groupId",
        "timezone",
        "userAgentData",
        "channel",
        "active",
    ):
        assert ctx[field] == CONTEXT[field], field
    # Clock skew: sentAt is 1 s after timestamp, so the stored time is receive time − 1 s.
    assert abs((stored["received_at"] - stored["timestamp"]).total_seconds() - 1.0) < 0.01

    assert rows[custom["messageId"]]["type"] == "Video Played"
    traits = json.loads(rows[identify["messageId"]]["properties"])
    assert traits["plan"] == "premium" and len(traits["email"]) == 64 and len(traits["name"]) == 64
    page_props = json.loads(rows[page["messageId"]]["properties"])
    assert rows[page["messageId"]]["type"] == "page_view"
    assert page_props == {"title": "Welcome", "url": "/", "name": "Home", "category": "Docs"}
    assert json.loads(rows[alias["messageId"]]["properties"])["previous_id"] == alias["previousId"]
    viewed = rows[batch["batch"][0]["messageId"]]
    assert viewed["type"] == "product_view"
    assert json.loads(viewed["context"])["integrations"] == {"All": True, "Mixpanel": False}
    assert rows[batch["batch"][1]["messageId"]]["type"] == "screen_view"

    merges = {(m["anonymous_id"], m["user_id"]) for m in wh.identities.to_pyarrow().to_pylist()}
    assert ("507f191e810c19729de860ea", "97980cfea0067") in merges
    assert ("39239-239239-239239-23923", "507f191e81") in merges
