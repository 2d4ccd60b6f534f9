"""The addresses a colleague could connect to, for a server that listens beyond loopback.

``--host 0.0.0.0`` says where the server listens, not where to reach it: as
miniserve does, the server names this machine's own addresses at start. They
come from ``ip -j addr`` where it exists (Linux), else from the host name's
addresses and the one the default route leaves by (a UDP ``connect`` sends
nothing); standard library only, and never an error: an address that cannot
be found is left out.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess

from ..hostport import host_port

# Not a destination: a UDP connect to it only asks the kernel which local
# address the default route would use (TEST-NET-1 and its IPv6 documentation twin).
_ROUTE_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))


def reachable_addresses(host: str, port: int) -> list[str]:
    """``HOST:PORT`` for each address of this machine that ``host`` listens on,
    loopback last; empty for a server that listens on one address only."""
    try:
        listening = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return []  # a name: the clients use that name
    if not listening.is_unspecified:
        return []  # one address, named in the Starting line already
    families = {4} if listening.version == 4 else {4, 6}  # "::" takes IPv4 too
    found = [a for a in _machine_addresses() if a.version in families and _useful(a)]
    ordered = sorted(set(found), key=lambda a: (a.is_loopback, a.version, int(a)))
    return [host_port(str(address), port) for address in ordered]


def _useful(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # A link-local IPv6 address needs its interface named (%eth0) to be reached.
    return not (address.is_link_local or address.is_unspecified or address.is_multicast)


def _machine_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    texts = _from_ip_command() or _from_host_name()
    addresses = []
    for text in texts:
        try:
            addresses.append(ipaddress.ip_address(text.split("%")[0]))
        except ValueError:
            continue
    return addresses


def _from_ip_command() -> list[str]:
    ip = shutil.which("ip")
    if ip is None:
        return []
    try:
        shown = subprocess.run(
            [ip, "-j", "addr", "show"], capture_output=True, text=True, timeout=5, check=True
        )
        interfaces = json.loads(shown.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    return [
        str(info["local"])
        for interface in interfaces
        if isinstance(interface, dict)
        for info in interface.get("addr_info", ())
        if isinstance(info, dict) and "local" in info
    ]


def _from_host_name() -> list[str]:
    texts = ["127.0.0.1"]
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
        texts += [str(info[4][0]) for info in infos]
    except OSError:
        pass
    for family, probe in _ROUTE_PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.connect((probe, 9))
                texts.append(str(udp.getsockname()[0]))
        except OSError:
            continue
    return texts
