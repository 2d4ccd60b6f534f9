"""The PROXY protocol header parser, on exact byte vectors (HAProxy's doc/proxy-protocol.txt)."""

from __future__ import annotations

import pytest

from filedock.protocol.proxy_header import (
    MAX_HEADER_LENGTH,
    NEED_MORE,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    InvalidHeader,
    ProxyHeader,
    parse_proxy_header,
    sniff_proxy_header,
)

SIG = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"  # spelled as the specification does

# send-proxy-v2 of TCP over IPv4: 192.0.2.1:56324 -> 192.0.2.11:443
V2_TCP4 = (
    SIG
    + b"\x21\x11\x00\x0c"
    + b"\xc0\x00\x02\x01"
    + b"\xc0\x00\x02\x0b"
    + b"\xdc\x04"  # 56324
    + b"\x01\xbb"  # 443
)
# TCP over IPv6: [2001:db8::1]:1234 -> [2001:db8::2]:50000
V2_TCP6 = (
    SIG
    + b"\x21\x21\x00\x24"
    + bytes.fromhex("20010db8000000000000000000000001")
    + bytes.fromhex("20010db8000000000000000000000002")
    + b"\x04\xd2\xc3\x50"
)
V2_LOCAL = SIG + b"\x20\x00\x00\x00"  # HAProxy's health check: no addresses


def replayed(data: bytes) -> object:
    """What the parser says once ``data`` came one byte at a time (NEED_MORE before it)."""
    for end in range(len(data)):
        outcome = parse_proxy_header(data[:end])
        if outcome is not NEED_MORE:
            return outcome
    return parse_proxy_header(data)


def test_the_signature_is_the_specifications() -> None:
    assert V2_SIGNATURE == SIG
    assert len(SIG) == 12


# -- version 1 ---------------------------------------------------------------------


def test_v1_tcp4_gives_the_source_and_what_follows_is_left() -> None:
    data = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nHELLO Client01\n"
    header = parse_proxy_header(data)
    assert header == ProxyHeader(1, 47, ("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert data[47:] == b"HELLO Client01\n"


def test_v1_tcp6_is_written_canonically() -> None:
    data = b"PROXY TCP6 2001:DB8:0:0::1 ::1 1 65535\r\n"
    assert parse_proxy_header(data) == ProxyHeader(1, len(data), ("2001:db8::1", 1), ("::1", 65535))


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",  # the longest: 107 bytes
    ],
)
def test_v1_unknown_carries_no_address(data: bytes) -> None:
    assert parse_proxy_header(data) == ProxyHeader(1, len(data))


def test_the_longest_v1_line_is_107_bytes() -> None:
    data = (
        b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
    )
    assert len(data) == V1_MAX_LENGTH


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n", "CRLF"),  # LF alone
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r443\r\n", "CRLF"),  # CR alone
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 7\r\n", "six fields"),
        (b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n", "six fields"),
        (b"PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n", "protocol"),
        (b"PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n", "protocol"),
        (b"PROXY TCP4 ::1 192.168.0.11 56324 443\r\n", "not TCP4"),  # wrong family
        (b"PROXY TCP6 192.168.0.1 ::1 56324 443\r\n", "not TCP6"),
        (b"PROXY TCP4 192.168.0.256 192.168.0.11 56324 443\r\n", "not TCP4"),
        (b"PROXY TCP4 192.168.00.1 192.168.0.11 56324 443\r\n", "not TCP4"),  # leading zero
        (b"PROXY TCP6 fe80::1%eth0 ::1 56324 443\r\n", "not TCP6"),  # a zone
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n", "port"),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n", "port"),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 +5632 443\r\n", "port"),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n", "port"),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 \r\n", "port"),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 \xd9\xa3 443\r\n", "US-ASCII"),  # Arabic 3
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 5632\x00 443\r\n", "US-ASCII"),
        (b"PROXY TCP4 caf\xc3\xa9 192.168.0.11 56324 443\r\n", "US-ASCII"),
        (b"PROXY\tTCP4 192.168.0.1 192.168.0.11 56324 443\r\n", "signature"),
        (b"proxy TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", "signature"),
        (b"HELLO Client01\r\n", "signature"),
    ],
)
def test_a_malformed_v1_line_is_invalid(data: bytes, reason: str) -> None:
    outcome = parse_proxy_header(data)
    assert isinstance(outcome, InvalidHeader)
    assert reason in outcome.reason
    assert replayed(data) == outcome  # one byte at a time it is refused as soon as it can be


def test_v1_without_crlf_within_107_bytes_is_invalid() -> None:
    data = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 14)
    assert len(data) == V1_MAX_LENGTH
    assert parse_proxy_header(data[:-1]) is NEED_MORE
    assert parse_proxy_header(data) == InvalidHeader("no CRLF within 107 bytes")
    # A CRLF just past the 107th byte comes too late.
    assert parse_proxy_header(data + b"\r\n") == InvalidHeader("no CRLF within 107 bytes")


def test_v1_needs_its_whole_line() -> None:
    data = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    for end in range(len(data)):
        assert parse_proxy_header(data[:end]) is NEED_MORE, data[:end]
    assert replayed(data) == ProxyHeader(
        1, len(data), ("192.168.0.1", 56324), ("192.168.0.11", 443)
    )


# -- version 2 ---------------------------------------------------------------------


def test_v2_tcp4() -> None:
    assert parse_proxy_header(V2_TCP4 + b"HELLO") == ProxyHeader(
        2, 28, ("192.0.2.1", 56324), ("192.0.2.11", 443)
    )


def test_v2_tcp6() -> None:
    assert parse_proxy_header(V2_TCP6) == ProxyHeader(
        2, 52, ("2001:db8::1", 1234), ("2001:db8::2", 50000)
    )


def test_v2_local_is_the_connections_own_endpoints() -> None:
    assert parse_proxy_header(V2_LOCAL + b"rest") == ProxyHeader(2, 16)
    # LOCAL with an address block (the length must be honoured, not assumed 0).
    local_with_block = SIG + b"\x20\x11\x00\x0c" + V2_TCP4[16:]
    assert parse_proxy_header(local_with_block) == ProxyHeader(2, 28)


def test_v2_tlvs_are_skipped() -> None:
    tlvs = b"\x05\x00\x04abcd" + b"\x04\x00\x00"  # a unique id, a NOOP
    data = SIG + b"\x21\x11" + (12 + len(tlvs)).to_bytes(2, "big") + V2_TCP4[16:] + tlvs
    header = parse_proxy_header(data + b"NEXT")
    assert header == ProxyHeader(2, len(data), ("192.0.2.1", 56324), ("192.0.2.11", 443))


@pytest.mark.parametrize(
    "family_transport",
    [
        b"\x00",  # UNSPEC
        b"\x12",  # UDP over IPv4
        b"\x22",  # UDP over IPv6
        b"\x31",  # UNIX stream
        b"\x32",  # UNIX datagram
        b"\x10",  # IPv4, transport unspecified
    ],
)
def test_v2_families_other_than_tcp_fall_back_to_the_real_endpoints(
    family_transport: bytes,
) -> None:
    block = b"\x00" * 216
    data = SIG + b"\x21" + family_transport + len(block).to_bytes(2, "big") + block
    assert parse_proxy_header(data) == ProxyHeader(2, len(data))


def test_v2_needs_its_whole_block() -> None:
    for end in range(len(V2_TCP6)):
        assert parse_proxy_header(V2_TCP6[:end]) is NEED_MORE, end


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (SIG[:11] + b"X" + b"\x21\x11\x00\x0c", "signature"),  # wrong signature
        (b"\r\n\r\nHELLO Client01\n", "signature"),
        (SIG + b"\x11\x11\x00\x0c", "version 1"),  # version nibble 1
        (SIG + b"\x31\x11\x00\x0c", "version 3"),
        (SIG + b"\x22\x11\x00\x0c", "command 2"),
        (SIG + b"\x2f\x11\x00\x0c", "command 15"),
        (SIG + b"\x21\x41\x00\x0c", "family and transport 0x41"),
        (SIG + b"\x21\x13\x00\x0c", "family and transport 0x13"),
        (SIG + b"\x21\x11\x04\x01", "over the 1040"),  # 1025 bytes announced
        (SIG + b"\x21\x11\xff\xff", "over the 1040"),
        (SIG + b"\x21\x11\x00\x08" + b"\x00" * 8, "under the 12 needed"),  # truncated block
        (SIG + b"\x21\x21\x00\x0c" + b"\x00" * 12, "under the 36 needed"),
    ],
)
def test_a_malformed_v2_header_is_invalid(data: bytes, reason: str) -> None:
    outcome = parse_proxy_header(data)
    assert isinstance(outcome, InvalidHeader)
    assert reason in outcome.reason
    assert replayed(data) == outcome


def test_the_largest_v2_header_taken() -> None:
    block = V2_TCP4[16:] + b"\x04" + (1024 - 12 - 3).to_bytes(2, "big") + b"\x00" * (1024 - 15)
    data = SIG + b"\x21\x11\x04\x00" + block
    assert len(data) == MAX_HEADER_LENGTH == 1040
    assert parse_proxy_header(data) == ProxyHeader(
        2, 1040, ("192.0.2.1", 56324), ("192.0.2.11", 443)
    )


def test_a_view_of_a_lent_buffer_is_read_too() -> None:
    buffer = bytearray(V2_TCP4 + b"\x00" * 100)
    assert parse_proxy_header(memoryview(buffer)[: len(V2_TCP4)]) == parse_proxy_header(V2_TCP4)


# -- sniffing: a header where none is expected ---------------------------------------


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (b"", None),
        (b"\r\n", None),  # a blank line, or a v2 signature's start
        (b"\r\n\r\n\x00\r\nQUI", None),
        (SIG, True),
        (V2_TCP4, True),
        (b"PROX", None),
        (b"PROXY ", True),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", True),
        (b"\r\n\r\nHELLO Client01\n", False),
        (b"HELLO Client01 filedock-client/1.0.0\n", False),
        (b"PROXYX", False),
        (b"\x16\x03\x01\x02\x00", False),  # a TLS ClientHello
    ],
)
def test_sniffing_the_first_bytes(data: bytes, verdict: bool | None) -> None:
    assert sniff_proxy_header(data) is verdict
