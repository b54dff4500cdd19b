"""Judgement's fast network keys agree with ipaddress on every input, odd ones included."""

from __future__ import annotations

import ipaddress

import pytest

from nsx_route_gc.judge import _net, _subnet_of


def reference(text: str) -> tuple[int, int, int] | None:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    return (net.version, int(net.network_address), net.prefixlen)


@pytest.mark.parametrize(
    "text",
    [
        "172.16.144.0/24",
        "172.16.144.7/24",  # host bits set: tolerated, as NSX does
        "0.0.0.0/0",
        "10.0.0.1/32",
        "255.255.255.255/32",
        "10.0.0.0/33",
        "10.0.0.0/024",
        "010.0.0.0/24",  # leading zeros: ipaddress refuses them
        "01.0.0.0/24",
        "10.0.0.01/24",
        "a.b.c.d/24",
        "10 0 0 0/24",  # not dots
        "१.२.३.४/24",  # non-ASCII digits in every octet
        "10.0.0.256/24",
        "10.0.0/24",
        "10.0.0.0.0/24",
        "10.0.0.0",
        "10.0.0.0/",
        "10.0.0.0/255.255.255.0",
        " 10.0.0.0/24 ",
        "१०.0.0.0/24",  # non-ASCII digits
        "10.0.0.0/2४",
        "fd00:10:244::/64",
        "fd00:10:244::1/64",
        "::/0",
        "not-a-network",
        "",
    ],
)
def test_network_key_matches_ipaddress(text: str) -> None:
    assert _net(text) == reference(text)


def test_subnet_of_matches_ipaddress() -> None:
    pairs = [
        ("172.16.146.0/24", "172.16.146.0/23"),
        ("172.16.148.0/24", "172.16.146.0/23"),
        ("172.16.146.0/23", "172.16.146.0/24"),
        ("fd00:10:244:1::/64", "fd00:10:244::/48"),
        ("172.16.146.0/24", "fd00:10:244::/48"),
    ]
    for inner, outer in pairs:
        a, b = ipaddress.ip_network(inner), ipaddress.ip_network(outer)
        expected = a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]  # versions checked first
        net, of = _net(inner), _net(outer)
        assert net is not None
        assert of is not None
        assert _subnet_of(net, of) == expected, (inner, outer)
