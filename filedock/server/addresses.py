"""Which source a client address belongs to, for the per-source rules.

One host can reach a server from many addresses: every address of
127.0.0.0/8 and ``::1`` on the machine itself, the 2**64 addresses of an IPv6
/64 that one subscriber is given, IPv4 written as IPv4-mapped IPv6. Limits
that key on the exact address are then no limits. :func:`source_group` names
the group an address falls in, and every per-source rule (slot cap, pending
share, failed-token limits, the log's rate limit) keys on that name.
"""

from __future__ import annotations

import functools
import ipaddress

from ..hostport import host_port

# The one name every loopback address shares: they are all this machine.
LOOPBACK = "loopback"

DEFAULT_IPV4_PREFIX = 32
DEFAULT_IPV6_PREFIX = 64


# Parsing costs a few µs per connection; clients come back from the same
# addresses. Bounded, so a flood of new addresses cannot grow it.
@functools.lru_cache(maxsize=4096)
def source_group(
    host: str, ipv4_prefix: int = DEFAULT_IPV4_PREFIX, ipv6_prefix: int = DEFAULT_IPV6_PREFIX
) -> str:
    """The source ``host`` counts as: ``"loopback"``, or its network in CIDR form.

    IPv4 addresses are grouped by ``ipv4_prefix`` bits, IPv6 ones by
    ``ipv6_prefix``; an IPv4-mapped IPv6 address counts as its IPv4 address.
    Anything that is not an IP address (a Unix socket's path) is its own group.
    """
    try:
        address = ipaddress.ip_address(host.partition("%")[0])  # drop a zone: fe80::1%eth0
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return LOOPBACK
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def is_loopback_host(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only.

    ``""`` (every interface), a name other than ``localhost`` and any
    non-loopback address are not.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


def check_prefix(value: int, bits: int) -> bool:
    """Whether ``value`` is a prefix length for an address of ``bits`` bits."""
    return 1 <= value <= bits


def peer_address(peer: object) -> str:
    """``host:port`` (``[v6]:port``) for a socket's peer address tuple.

    An IPv4 client of a dual-stack listener (``--host ::``) arrives as an
    IPv4-mapped IPv6 address: it is shown as the IPv4 address it is. (A
    prefix test, not ipaddress: this runs for every connection.)
    """
    if not (isinstance(peer, tuple) and len(peer) >= 2):
        return str(peer)
    host = str(peer[0])
    if host.startswith(_MAPPED) and "." in host:
        host = host[len(_MAPPED) :]
    return host_port(host, int(peer[1]))


_MAPPED = "::ffff:"  # how the kernel writes an IPv4-mapped address
