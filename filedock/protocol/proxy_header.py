"""The PROXY protocol header a load balancer puts before a connection's bytes, parsed.

HAProxy's ``send-proxy`` (version 1, one line of text) and ``send-proxy-v2``
(version 2, binary) tell the server whom the balancer is relaying: the
client's address and port, which the server then uses in the client's place
(see HAProxy's ``doc/proxy-protocol.txt``). Pure, as the rest of the package:
:func:`parse_proxy_header` takes the bytes received so far and answers
:data:`NEED_MORE`, a :class:`ProxyHeader`, or an :class:`InvalidHeader`
saying why. The driver decides what a connection without a header, or from a
peer not trusted to send one, gets.

What carries no address the server can use is a header all the same, with
``source`` ``None`` (the connection's own endpoints apply): version 1's
``UNKNOWN``, version 2's ``LOCAL`` command (a balancer's health check), and
version 2's families and transports other than TCP over IPv4 or IPv6 (UNIX
sockets, UDP), which the specification lets a receiver treat as unspecified.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

V1_PREFIX: Final = b"PROXY "
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"

# Version 1's longest line, CRLF included ("PROXY UNKNOWN" with two full
# IPv6 addresses and ports): the specification's receiver gives up past it.
V1_MAX_LENGTH: Final = 107

# Version 2's fixed part: the signature, version and command, family and
# transport, the length of what follows.
V2_FIXED_LENGTH: Final = 16
# What follows the fixed part, at most: the largest address block (two UNIX
# paths of 108 bytes) and the TLVs HAProxy may add (a unique id of up to 128
# bytes, the authority, ALPN, the TLS details) fit with room to spare. The
# field allows 65535; no honest balancer sends that much, and a connection
# should not hold 64 KiB on the word of its first bytes.
V2_MAX_ADDRESS_LENGTH: Final = 1024

# The most bytes any header takes: what a receiver may have to hold.
MAX_HEADER_LENGTH: Final = V2_FIXED_LENGTH + V2_MAX_ADDRESS_LENGTH

_FIRST_BYTES = frozenset({V2_SIGNATURE[0], V1_PREFIX[0]})
_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_UNSPEC, _STREAM, _DGRAM = 0x0, 0x1, 0x2
_IPV4_BLOCK = struct.Struct("!4s4sHH")  # source, destination, source port, destination port
_IPV6_BLOCK = struct.Struct("!16s16sHH")
_LENGTH = struct.Struct("!H")


class _NeedMore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE: Final = _NeedMore()


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A whole header: ``length`` bytes of the input, the relayed addresses.

    ``source`` and ``destination`` are ``(host, port)``, or ``None`` when the
    header carries none the server can use (``UNKNOWN``, ``LOCAL``, a UNIX
    socket, UDP): then the connection's own endpoints stand.
    """

    version: int
    length: int
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class InvalidHeader:
    """Bytes that are no valid PROXY header; ``reason`` says what is wrong, for the log."""

    reason: str


Parsed = ProxyHeader | InvalidHeader | _NeedMore


def parse_proxy_header(data: bytes | bytearray | memoryview) -> Parsed:
    """The PROXY header at the start of ``data`` (what the connection sent so far)."""
    data = bytes(data[:MAX_HEADER_LENGTH])
    if V2_SIGNATURE.startswith(data[: len(V2_SIGNATURE)]):
        return _parse_v2(data) if data else NEED_MORE
    if V1_PREFIX.startswith(data[: len(V1_PREFIX)]):
        return _parse_v1(data)
    return InvalidHeader("no PROXY protocol signature")


def sniff_proxy_header(data: bytes | bytearray | memoryview) -> bool | None:
    """Whether ``data``, the first bytes of a connection, start a PROXY header:
    ``None`` while too few bytes came to tell (a prefix of a signature)."""
    if not data:
        return None
    if data[0] not in _FIRST_BYTES:  # (a HELLO, a TLS record: every connection asks)
        return False
    for signature in (V2_SIGNATURE, V1_PREFIX):
        start = bytes(data[: len(signature)])
        if signature.startswith(start):
            return True if len(start) == len(signature) else None
    return False


# -- version 1: "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n" ----------------------


def _parse_v1(data: bytes) -> Parsed:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if b"\n" in data[:V1_MAX_LENGTH]:
            return InvalidHeader("version 1 line not ended by CRLF")
        if len(data) >= V1_MAX_LENGTH:
            return InvalidHeader(f"no CRLF within {V1_MAX_LENGTH} bytes")
        return NEED_MORE
    line = data[:end]
    if b"\n" in line or b"\r" in line:
        return InvalidHeader("version 1 line not ended by CRLF")
    if any(byte < 0x20 or byte > 0x7E for byte in line):
        return InvalidHeader("version 1 line is not printable US-ASCII")
    length = end + 2
    fields = line.decode("ascii").split(" ")
    if fields[1:2] == ["UNKNOWN"]:
        return ProxyHeader(1, length)  # the rest of the line is to be ignored
    if len(fields) != 6:
        return InvalidHeader("version 1 line does not have six fields")
    _, family, source, destination, source_port, destination_port = fields
    version = {"TCP4": 4, "TCP6": 6}.get(family)
    if version is None:
        return InvalidHeader(f"unknown version 1 protocol {family!r}")
    hosts = (_v1_address(source, version), _v1_address(destination, version))
    ports = (_v1_port(source_port), _v1_port(destination_port))
    if hosts[0] is None or hosts[1] is None:
        return InvalidHeader(f"an address that is not {family}")
    if ports[0] is None or ports[1] is None:
        return InvalidHeader("a port that is not a decimal number from 0 to 65535")
    return ProxyHeader(1, length, (hosts[0], ports[0]), (hosts[1], ports[1]))


def _v1_address(text: str, version: int) -> str | None:
    """``text`` in its canonical form if it is an address of that IP version."""
    if "%" in text:  # an IPv6 zone is no address of the wire
        return None
    try:
        address = ipaddress.ip_address(text)  # (refuses IPv4's leading zeros too)
    except ValueError:
        return None
    return str(address) if address.version == version else None


def _v1_port(text: str) -> int | None:
    # Plain ASCII digits, no sign, no leading zero (int() would take " 1", "+1", "٣").
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
        return None
    if text != "0" and text.startswith("0"):
        return None
    port = int(text)
    return port if port <= 0xFFFF else None


# -- version 2: the signature, then ver/cmd, family/transport, length, addresses ------


def _parse_v2(data: bytes) -> Parsed:
    if len(data) < V2_FIXED_LENGTH:
        return NEED_MORE
    version_command, family_transport = data[12], data[13]
    (address_length,) = _LENGTH.unpack_from(data, 14)
    if version_command >> 4 != 2:
        return InvalidHeader(f"version 2 signature with version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (_V2_LOCAL, _V2_PROXY):
        return InvalidHeader(f"unknown version 2 command {command}")
    family, transport = family_transport >> 4, family_transport & 0x0F
    if family > _AF_UNIX or transport > _DGRAM:
        return InvalidHeader(f"unknown version 2 family and transport 0x{family_transport:02x}")
    if address_length > V2_MAX_ADDRESS_LENGTH:
        return InvalidHeader(
            f"version 2 header of {V2_FIXED_LENGTH + address_length} bytes, "
            f"over the {MAX_HEADER_LENGTH} taken"
        )
    length = V2_FIXED_LENGTH + address_length
    if len(data) < length:
        return NEED_MORE
    if command == _V2_LOCAL or transport != _STREAM or family in (_AF_UNSPEC, _AF_UNIX):
        return ProxyHeader(2, length)  # the connection's own endpoints (see the module)
    block = _IPV4_BLOCK if family == _AF_INET else _IPV6_BLOCK
    if address_length < block.size:
        return InvalidHeader(
            f"version 2 address block of {address_length} bytes, under the {block.size} needed"
        )
    source, destination, source_port, destination_port = block.unpack_from(data, 16)
    # What follows the addresses (TLVs) is skipped: nothing in it is used.
    return ProxyHeader(
        2,
        length,
        (_v2_address(source), source_port),
        (_v2_address(destination), destination_port),
    )


def _v2_address(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))
