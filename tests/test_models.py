"""Route keeps its NSX body packed in memory and gives back exactly the text it was given."""

from __future__ import annotations

import json
from dataclasses import replace

from nsx_route_gc.models import Route

T1 = "/infra/tier-1s/t1"


def route(raw: str | None) -> Route:
    return Route(T1, "r1", f"{T1}/static-routes/r1", "10.0.0.0/24", ("10.0.0.1",), (), raw=raw)


def test_raw_comes_back_byte_for_byte_and_smaller() -> None:
    body = {
        "id": "r1",
        "network": "10.0.0.0/24",
        "display_name": "Ünïcode route ✓",
        "next_hops": [{"ip_address": "10.0.0.1", "admin_distance": 7, "scope": ["/infra/x"]}],
        "tags": [{"scope": "vsphere.k8s.io/cluster-name", "tag": "kubernetes"}],
        "_revision": 3,
    }
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)

    r = route(text)

    assert r.raw == text
    assert r.nsx_object == body
    assert r.packed is not None
    assert len(r.packed) < len(text.encode())


def test_no_body_stays_none() -> None:
    assert route(None).raw is None
    assert route(None).nsx_object is None


def test_replace_keeps_the_body_and_equality_ignores_it() -> None:
    original = route('{"id":"r1"}')

    moved = replace(original, router_path="/infra/tier-1s/other")

    assert moved.raw == '{"id":"r1"}'
    assert route('{"id":"r1","x":1}') == route('{"id":"r1"}')
