"""Reaching a test server's HTTP side (``--http``): its port, and one request at a time."""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from tests.support import HOST, ServerThread


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def http_port(server: ServerThread) -> int:
    def port() -> int:
        assert server.server is not None
        assert server.server.watch is not None, "started with http="
        return server.server.watch.address[1]

    return server.sync(port)


def http_get(
    port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> Answer:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()
