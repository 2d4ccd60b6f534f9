"""Where a server is, as people write it: ``HOST``, ``HOST:PORT`` or a ``filedock://`` URL.

::

    127.0.0.1                      a host alone (an IPv6 address may be bare: ``::1``)
    127.0.0.1:50001, [::1]:50001   a host and its port (IPv6 in brackets, as ssh and curl)
    filedock://tok@files.lan:50001 a URL: an access token before ``@``, the port after ``:``
    filedocks://files.lan          the same over TLS

A token holding ``@``, ``:`` or ``/`` is written percent-encoded (``%40``).
Anything else is refused with a ``ValueError`` that says what was wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

PLAIN_SCHEME = "filedock"
TLS_SCHEME = "filedocks"

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True, slots=True)
class Address:
    """A server's address: ``port`` None when none was written (the default applies),
    ``token`` None when none was, ``tls`` True for ``filedocks://`` (None: not said)."""

    host: str
    port: int | None = None
    token: str | None = None
    tls: bool | None = None


def parse_address(text: str) -> Address:
    """``HOST``, ``HOST:PORT``, ``[IPV6]:PORT`` or a ``filedock[s]://`` URL; ValueError if none."""
    if _URL.match(text):
        return parse_url(text)
    return _host_and_port(text, text)


def parse_url(url: str) -> Address:
    """``filedock://[token@]host[:port]`` (``filedocks://`` for TLS); ValueError if not one."""
    match = _URL.match(url)
    shown = _hide_token(url)  # never the token itself in a message: it may be printed, logged
    if match is None:
        raise ValueError(f"{shown!r} is not a filedock URL (filedock://[token@]host:port)")
    scheme = match["scheme"].lower()
    if scheme not in (PLAIN_SCHEME, TLS_SCHEME):
        raise ValueError(
            f"{shown!r}: the scheme must be filedock:// or filedocks://, not {scheme}://"
        )
    where, _, path = match["rest"].partition("/")
    if path or any(mark in where for mark in "?#"):
        raise ValueError(f"{shown!r}: a filedock URL names a server only, not a path or query")
    token, at, hostport = where.rpartition("@")
    address = _host_and_port(hostport, shown)
    return Address(
        address.host,
        address.port,
        _token(token, shown) if at else None,
        tls=scheme == TLS_SCHEME,
    )


def _host_and_port(text: str, given: str) -> Address:
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"{given!r} names no server host")
    if "@" in text or "/" in text:
        raise ValueError(f"{given!r} is not a host (a token goes in filedock://token@host:port)")
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        if not bracket or not host or ":" not in host:
            raise ValueError(f"{given!r}: brackets hold an IPv6 address, as in [::1]:50000")
        if not after:
            return Address(host)
        if not after.startswith(":"):
            raise ValueError(f"{given!r}: after [{host}] comes :PORT")
        return Address(host, _port(after[1:], given))
    if text.count(":") == 1:  # two or more: a bare IPv6 address, with no port
        host, _, port = text.partition(":")
        if not host:
            raise ValueError(f"{given!r} names no server host")
        return Address(host, _port(port, given))
    return Address(text)


def _port(text: str, given: str) -> int:
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{given!r}: {text!r} is not a port (1-65535)")
    return int(text)


def _token(text: str, given: str) -> str:
    try:
        token = unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"{given!r}: the token is not UTF-8 once %-decoded") from None
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"{given!r}: the token before '@' is empty or holds white space")
    return token


def _hide_token(url: str) -> str:
    """``url`` with its token, if any, shown as ``…``."""
    scheme, sep, rest = url.partition("://")
    where, slash, path = rest.partition("/")
    if not sep or "@" not in where:
        return url
    return f"{scheme}://…@{where.rpartition('@')[2]}{slash}{path}"
