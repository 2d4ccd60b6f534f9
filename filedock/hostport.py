"""``host:port`` as people, logs and URLs write it: an IPv6 address in brackets.

``::1:50000`` cannot be read back (which colon starts the port?); ``[::1]:50000``
is how ssh, curl and browsers write it.
"""

from __future__ import annotations


def host_port(host: str, port: int) -> str:
    """``127.0.0.1:50000``, ``[::1]:50000``; a host already in brackets stays as it is."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"
