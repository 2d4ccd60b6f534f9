#!/usr/bin/env python3
"""The anchors' asyncio servers: the least any asyncio line server pays per request.

Both speak just enough of filedock's protocol for the benchmark's clients:
``NAME`` on connect, ``HELLO`` → ``WELCOME``, ``PING`` → ``PONG``, ``EXIT`` →
``BYE`` and close, anything else → ``ACK``. No limits, no registry, no logging.

``--kind streams``: the minimal streams server (``readuntil``, ``write``,
``drain``), one task per connection.
``--kind batch``: a bare ``asyncio.Protocol`` that answers every complete line
of a received batch with one ``write`` — filedock's design with nothing else.

Prints ``PORT <n>`` on stdout once listening; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

REPLIES = {b"PING": b"PONG\n", b"EXIT": b"BYE\n"}
NAME = b"NAME Floor01\n"
WELCOME = b"WELCOME Floor01 floor\n"


def reply_to(line: bytes) -> bytes:
    line = line.strip()
    if line.startswith(b"HELLO"):
        return WELCOME
    return REPLIES.get(line, b"ACK\n")


async def streams_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(NAME)
    try:
        while True:
            line = await reader.readuntil(b"\n")
            reply = reply_to(line)
            writer.write(reply)
            await writer.drain()
            if reply == b"BYE\n":
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


class BatchProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's do not derive from it
        self.pending = b""
        transport.write(NAME)

    def data_received(self, data: bytes) -> None:
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        replies = [reply_to(line) for line in lines]
        self.transport.write(b"".join(replies))
        if b"BYE\n" in replies:
            self.transport.close()


async def serve(kind: str, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    if kind == "streams":
        server = await asyncio.start_server(streams_client, host, port, backlog=1024)
    else:
        server = await loop.create_server(BatchProtocol, host, port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["streams", "batch"], default="streams")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    factory = asyncio.new_event_loop
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.kind, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
