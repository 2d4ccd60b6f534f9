"""The HTTP side's request parsing: strict limits, GET and HEAD only, no body."""

from __future__ import annotations

import asyncio

import pytest

from filedock.server.http_listener import (
    MAX_HEAD,
    MAX_HEADERS,
    HeadError,
    Request,
    Response,
    encode,
    keeps_alive,
    parse_head,
    read_head,
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


def _read(data: bytes) -> bytes:
    async def read() -> bytes:
        reader = asyncio.StreamReader(limit=MAX_HEAD)
        reader.feed_data(data)
        reader.feed_eof()
        return await read_head(reader)

    return asyncio.run(read())


def test_a_head_is_read_line_by_line_up_to_its_blank_line() -> None:
    assert _read(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next") == (
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"  # an empty line before it is skipped
    )


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\n\r\n", 400),
        (b"GET /" + b"a" * MAX_HEAD + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * (MAX_HEADERS + 1) + b"\r\n", 431),
        (b"\r\n" * MAX_HEAD, 414),
    ],
)
def test_a_head_read_is_refused_as_soon_as_it_breaks_a_rule(data: bytes, status: int) -> None:
    with pytest.raises(HeadError) as refused:
        _read(data)
    assert refused.value.response.status == status


@pytest.mark.parametrize(
    "lines",
    [
        ("GET /\x00 HTTP/1.1",),
        ("GET /\xe9 HTTP/1.1",),
        ("GET / HTTP/1.1", "X: a\x00b"),
        ("GET / HTTP/1.1", "X: a\rb"),
        ("GET / HTTP/1.1", "X: a\x7fb"),
        ("GET / HTTP/1.1", "Host: a", "Host: b"),
        ("GET / HTTP/1.1", "Host: a", "HOST: a"),
    ],
)
def test_control_characters_and_a_second_host_are_refused(lines: tuple[str, ...]) -> None:
    with pytest.raises(HeadError) as refused:
        parse_head(head(*lines))
    assert refused.value.response.status == 400


def test_http_1_1_needs_a_host_and_http_1_0_does_not() -> None:
    with pytest.raises(HeadError):
        parse_head(b"GET / HTTP/1.1\r\n\r\n")
    assert parse_head(b"GET / HTTP/1.0\r\n\r\n").version == "HTTP/1.0"
    assert parse_head(head("GET / HTTP/1.1", "X: a\tb \xe9")).headers["x"] == "a\tb \xe9"
