"""The HTTP side's request parsing: strict limits, GET and HEAD only, no body."""

from __future__ import annotations

import pytest

from filedock.server.http_listener import (
    MAX_HEADERS,
    HeadError,
    Request,
    Response,
    encode,
    keeps_alive,
    parse_head,
)


def head(*lines: str) -> bytes:
    """A request head of ``lines``, with a ``Host`` after the request line when they have none."""
    if len(lines) > 0 and not any(line.lower().startswith("host:") for line in lines):
        lines = (lines[0], "Host: 127.0.0.1", *lines[1:])
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_a_plain_get_is_read() -> None:
    request = parse_head(head("GET /status.json?x=1 HTTP/1.1", "Host: 127.0.0.1", "A: 1", "a: 2"))
    assert (request.method, request.path, request.query) == ("GET", "/status.json", "x=1")
    assert request.headers == {"host": "127.0.0.1", "a": "1, 2"}


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        (("GET /",), 400),
        (("GET  / HTTP/1.1",), 400),
        (("G(T / HTTP/1.1",), 400),
        (("GET / HTTP/2.0",), 505),
        (("GET example.com HTTP/1.1",), 400),
        (("GET / HTTP/1.1", "No colon here"), 400),
        (("GET / HTTP/1.1", "Space : before"), 400),
        (("POST / HTTP/1.1", "Content-Length: 3"), 405),
        (("DELETE /metrics HTTP/1.1",), 405),
        (("GET / HTTP/1.1", "Content-Length: 5"), 400),
        (("GET / HTTP/1.1", "Transfer-Encoding: chunked"), 400),
        (("GET / HTTP/1.1", *(f"X-{n}: y" for n in range(MAX_HEADERS + 1))), 431),
    ],
)
def test_a_refused_head_says_why_by_its_status(lines: tuple[str, ...], status: int) -> None:
    with pytest.raises(HeadError) as refused:
        parse_head(head(*lines))
    assert refused.value.response.status == status


def test_405_names_the_methods_allowed() -> None:
    with pytest.raises(HeadError) as refused:
        parse_head(head("PUT /x HTTP/1.1"))
    assert ("Allow", "GET, HEAD") in refused.value.response.headers


@pytest.mark.parametrize(
    ("version", "connection", "kept"),
    [
        ("HTTP/1.1", "", True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.1", "TE, Close", False),
        ("HTTP/1.0", "", False),
        ("HTTP/1.0", "keep-alive", True),
    ],
)
def test_keep_alive_follows_the_version_and_the_connection_header(
    version: str, connection: str, kept: bool
) -> None:
    headers = {"connection": connection} if connection else {}
    assert keeps_alive(Request("GET", "/", "", headers, version)) is kept


def test_head_answers_the_headers_of_get_without_the_body() -> None:
    response = Response(200, b"ok\n")
    full = encode(response, head_only=False, keep_alive=True)
    bare = encode(response, head_only=True, keep_alive=True)
    assert full == bare + b"ok\n"
    assert b"\r\nContent-Length: 3\r\n" in bare
    assert b"\r\nConnection: keep-alive\r\n" in bare
    assert full.startswith(b"HTTP/1.1 200 OK\r\n")
