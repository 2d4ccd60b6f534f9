"""Source groups: which addresses count as one source for the per-source rules."""

from __future__ import annotations

import pytest

from filedock.server.addresses import LOOPBACK, is_loopback_host, peer_address, source_group


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.2", "127.1.2.3", "127.255.255.254", "::1", "::ffff:127.0.0.1"],
)
def test_every_loopback_address_is_one_source(host: str) -> None:
    assert source_group(host) == LOOPBACK
    assert source_group(host, ipv4_prefix=8, ipv6_prefix=32) == LOOPBACK


def test_ipv4_is_its_exact_address_by_default() -> None:
    assert source_group("192.0.2.10") == "192.0.2.10/32"
    assert source_group("192.0.2.11") == "192.0.2.11/32"


def test_ipv4_prefix_groups_a_network() -> None:
    assert source_group("192.0.2.10", ipv4_prefix=24) == "192.0.2.0/24"
    assert source_group("192.0.2.250", ipv4_prefix=24) == "192.0.2.0/24"
    assert source_group("192.0.3.1", ipv4_prefix=24) == "192.0.3.0/24"


def test_ipv6_is_grouped_by_its_64() -> None:
    one = source_group("2001:db8:1:2:aaaa::1")
    assert one == "2001:db8:1:2::/64"
    assert source_group("2001:db8:1:2:ffff:ffff:ffff:ffff") == one
    assert source_group("2001:db8:1:3::1") != one
    assert source_group("2001:db8:1:2:aaaa::1", ipv6_prefix=48) == "2001:db8:1::/48"


def test_ipv4_mapped_ipv6_counts_as_its_ipv4() -> None:
    assert source_group("::ffff:192.0.2.10") == source_group("192.0.2.10")
    assert source_group("::ffff:192.0.2.10", ipv4_prefix=24) == "192.0.2.0/24"


def test_a_zone_is_ignored() -> None:
    assert source_group("fe80::1%eth0") == source_group("fe80::2")


def test_what_is_not_an_address_is_its_own_group() -> None:
    assert source_group("") == ""
    assert source_group("/run/filedock.sock") == "/run/filedock.sock"


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.0.2.1", False),
        ("example.org", False),
    ],
)
def test_is_loopback_host(host: str, local: bool) -> None:
    assert is_loopback_host(host) is local


@pytest.mark.parametrize(
    ("peer", "text"),
    [
        (("127.0.0.1", 5000), "127.0.0.1:5000"),
        (("::1", 5000, 0, 0), "[::1]:5000"),
        (("::ffff:192.0.2.7", 5000, 0, 0), "192.0.2.7:5000"),  # IPv4 on a dual-stack listener
        (("fe80::1%eth0", 5000, 0, 2), "[fe80::1%eth0]:5000"),
        ("/run/filedock.sock", "/run/filedock.sock"),
    ],
)
def test_a_peer_is_shown_as_people_write_it(peer: object, text: str) -> None:
    assert peer_address(peer) == text
