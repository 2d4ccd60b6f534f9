"""Attacks on admission from outside: a real `python3 Server.py --port 0`.

Each attack is a bounded loop from 127.0.0.1, the same source as the honest
client; afterwards the server must still serve, with no traceback, its log
bounded, and every slot and pending place it gave freed (checked with WHO
and, under --max-pending-per-ip 1, with the next connection's NAME).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from filedock.client.client import Client
from tests.integration.test_admission import SilentAttacker
from tests.support import HOST, BackgroundLoad, LineConn, wait_until
from tests.support.process import ServerProcess

TOKEN = "the-holders-token-0123456789"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `Server.py` with the given options; every one is stopped at the end."""
    started: list[ServerProcess] = []
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "sample.txt").write_bytes(b"hello\n")

    def start_server(*options: str) -> ServerProcess:
        server = ServerProcess(repo, *options)
        started.append(server)
        return server

    yield start_server
    for server in started:
        server.stop()
        assert "Traceback" not in server.log, server.log[-3000:]


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens"
    path.write_text(TOKEN + "\n")
    return str(path)


def the_pool_place_is_free(port: int) -> bool:
    """Under --max-pending-per-ip 1: whether a new connection is named (not FULL)."""
    with LineConn(port) as probe:
        return probe.read_line().startswith("NAME ")


def who(port: int, token: str | None = None) -> list[str]:
    with Client(HOST, port, token=token, timeout=10) as client:
        return [name for name in client.who() if name != client.name]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# -- trickles and silences ----------------------------------------------------------


def make_certificate(tmp_path: Path) -> tuple[str, str]:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


# -- floods ----------------------------------------------------------------------------


def test_a_flood_of_full_bound_connections_costs_little_and_logs_little(
    start: Callable[..., ServerProcess],
) -> None:
    server = start("--max-clients", "1")
    with Client(HOST, server.port, timeout=10) as holder:
        cpu_before = cpu_seconds(server.proc.pid)
        lines_before = len(server.lines)
        turned_away = 0
        started = time.monotonic()
        for _ in range(2000):
            with LineConn(server.port) as conn:
                turned_away += conn.read_line().startswith("FULL ")
        took = time.monotonic() - started
        cpu = cpu_seconds(server.proc.pid) - cpu_before
        assert turned_away == 2000
        assert holder.ping() >= 0
    # Under a millisecond of server CPU a refusal (measured: about 0.2).
    assert cpu / 2000 < 0.001, f"{cpu:.2f} s CPU for 2000 refusals in {took:.1f} s"
    assert len(server.lines) - lines_before < 50  # rate-limited: 20, then a count


def test_silent_connections_to_a_tls_server_past_the_pool_are_bounded(
    start: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path)
    server = start("--tls-cert", cert, "--tls-key", key)
    pid = server.proc.pid
    before = rss_mib(pid)
    socks: list[socket.socket] = []
    try:
        for _ in range(600):
            sock = socket.socket()
            sock.settimeout(10)
            sock.connect((HOST, server.port))  # and never a byte of TLS
            socks.append(sock)
        wait_until(lambda: len(os.listdir(f"/proc/{pid}/fd")) < 100, timeout=10)
        grown = rss_mib(pid) - before
        # 16 pending (this machine's share) with a TLS layer each, 256 KiB or so.
        assert grown < 40, f"grew {grown:.1f} MiB for 600 silent connections"
        with Client(HOST, server.port, tls=insecure_tls(), timeout=10) as client:
            assert client.ping() >= 0  # an honest TLS client still gets in
    finally:
        for sock in socks:
            sock.close()


def insecure_tls() -> ssl.SSLContext:
    from filedock.client.connection import client_context

    return client_context(insecure=True)


# -- greetings -------------------------------------------------------------------------


def test_a_greeting_with_a_4_kib_token(
    start: Callable[..., ServerProcess], token_file: str
) -> None:
    server = start("--token-file", token_file, "--max-pending-per-ip", "1")
    with LineConn(server.port) as conn:
        conn.read_line()
        assert conn.request("HELLO token=" + "t" * 4096).startswith("ERR line-too-long ")
        assert conn.at_eof()
    with LineConn(server.port) as conn:
        conn.read_line()
        assert conn.request("HELLO token=" + "t" * 4000).startswith("ERR unauthorized ")
    wait_until(lambda: the_pool_place_is_free(server.port), timeout=10)


def test_many_hello_lines_in_one_packet_are_one_guess(
    start: Callable[..., ServerProcess], token_file: str
) -> None:
    server = start("--token-file", token_file)
    with LineConn(server.port, timeout=10) as conn:
        conn.read_line()
        lines = "".join(f"HELLO token=guess-{i}\n" for i in range(200))
        conn.send(lines + f"HELLO token={TOKEN}\n")
        assert conn.read_line().startswith("ERR unauthorized ")
        assert conn.at_eof()
    # One failure only: the next answer waits 0.25 s, not the longest delay.
    with LineConn(server.port, timeout=10) as conn:
        conn.read_line()
        started = time.monotonic()
        assert conn.request(f"HELLO token={TOKEN}").startswith("WELCOME ")
        assert time.monotonic() - started < 2.0
    assert server.log.count("gave no valid token") == 1
    with LineConn(server.port, timeout=10) as conn:
        conn.read_line()
        conn.send(f"HELLO token={TOKEN}\n" + "HELLO token=guess\n" * 50 + "WHO\n")
        assert conn.read_line().startswith("WELCOME ")
        for _ in range(50):  # after WELCOME a HELLO is no greeting: it is echoed
            assert conn.read_line().startswith("ACK ")
        assert conn.read_line().startswith("WHO ")
    assert server.log.count("gave no valid token") == 1


def test_exit_before_hello_frees_the_pool_place(start: Callable[..., ServerProcess]) -> None:
    server = start("--max-pending-per-ip", "1")
    for _ in range(20):
        with LineConn(server.port) as conn:
            assert conn.read_line().startswith("NAME ")
            assert conn.request("EXIT") == "BYE"
            assert conn.at_eof()
        wait_until(lambda: the_pool_place_is_free(server.port))
    assert who(server.port) == []


# -- resets ----------------------------------------------------------------------------


def reset_at(port: int, stage: str) -> None:
    """Connect and reset the connection at ``stage``."""
    conn = LineConn(port, timeout=10)
    if stage != "connect":
        conn.read_line()
    if stage == "hello":
        conn.send_line("HELLO")
    elif stage == "wrong token":
        conn.send_line("HELLO token=wrong")
    elif stage == "right token":
        conn.send_line(f"HELLO token={TOKEN}")
    elif stage == "welcomed":
        assert conn.request(f"HELLO token={TOKEN}").startswith("WELCOME ")
    elif stage == "mid-command":
        assert conn.request(f"HELLO token={TOKEN}").startswith("WELCOME ")
        conn.send("STATUS\nLIST\nGET sample.txt\nPI")
    conn.reset()


@pytest.mark.parametrize(
    "stage", ["connect", "named", "hello", "wrong token", "right token", "welcomed", "mid-command"]
)
def test_a_reset_at_every_stage_frees_the_slot_and_the_place(
    start: Callable[..., ServerProcess], token_file: str, stage: str
) -> None:
    server = start("--token-file", token_file, "--max-pending-per-ip", "1", "--max-clients", "1")
    for _ in range(3):
        reset_at(server.port, stage)
        # A wrong token's place is held for its delay (at most 1 s here): polled.
        wait_until(lambda: the_pool_place_is_free(server.port), timeout=10)
        assert who(server.port, TOKEN) == []  # the one slot is free again


# -- signals -------------------------------------------------------------------------------


class PendingStorm(BackgroundLoad):
    """Silent and greeting connections from this machine, as fast as they go, until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(port, 4)
        self.made = 0

    def _run(self) -> None:
        held: list[socket.socket] = []
        for attempt in range(5000):  # bounded
            if self._stop.is_set():
                break
            try:
                sock = socket.create_connection((HOST, self.port), timeout=2)
            except OSError:
                break  # the server has gone
            if attempt % 3 == 0:
                sock.sendall(b"HELLO token=wrong\n")
            held.append(sock)
            self.made += 1
            if len(held) > 30:
                held.pop(0).close()
        for sock in held:
            sock.close()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGHUP, 0)])
def test_a_signal_during_a_pending_storm_stops_the_server_cleanly(
    start: Callable[..., ServerProcess], token_file: str, signum: int, code: int
) -> None:
    server = start("--token-file", token_file)
    with PendingStorm(server.port) as storm:
        wait_until(lambda: storm.made > 200, timeout=20)
        started = time.monotonic()
        server.proc.send_signal(signum)
        try:
            exit_code = server.proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail("the server did not stop within 20 s")
        took = time.monotonic() - started
    assert exit_code == code
    assert took < 12.0  # the shutdown grace (5 s) and a little
    server.wait_for_log("Shutting down")


def test_silent_reconnecting_connections_never_lock_out_a_tls_client_of_the_same_source(
    start: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """As over TCP (see test_admission): 40 silent connections that reconnect
    when dropped, and a TLS client of this machine gets in each time, its TLS
    handshake being a few round trips that a newcomer must not cut short."""
    cert, key = make_certificate(tmp_path)
    server = start("--tls-cert", cert, "--tls-key", key)
    welcomed = 0
    with SilentAttacker(server.port, 40) as attacker:
        wait_until(lambda: attacker.opened >= 60, timeout=10)  # dropped ones came back
        for _ in range(9):
            with Client(HOST, server.port, tls=insecure_tls(), timeout=5) as client:
                assert client.ping() >= 0
                welcomed += 1
            time.sleep(0.3)  # nine tries over a few seconds, as a person would
    assert welcomed == 9
