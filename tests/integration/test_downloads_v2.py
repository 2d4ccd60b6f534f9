"""Version 2's greeting and download verbs against an in-process server (port 0):
``HELLO … proto=2``, ``HASH``, ``RANGE`` and ``LIST <folder>``, on the wire and
through the library and the command line."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from filedock import protocol as p
from filedock.cli.client import client_main
from filedock.client.client import Client, TransferProgress
from filedock.client.connection import client_context
from filedock.errors import BadRange, Changed, Forbidden, NotFound
from filedock.version import __version__
from tests.conftest import SAMPLE
from tests.support import (
    HOST,
    LineConn,
    ServerThread,
    TypedAtATerminal,
    random_bytes,
    write_file,
)

SAMPLE_SHA = hashlib.sha256(SAMPLE).hexdigest()
# Over the 1 MiB the hashing splits small files at, and over one sendfile call's worth.
BIG = random_bytes(3 * 1024 * 1024 + 17)
BIG_SHA = hashlib.sha256(BIG).hexdigest()


@pytest.fixture
def tree(repo: Path) -> Path:
    """The repository with folders: some listed, a hidden one, a look-alike name."""
    write_file(repo / "sub" / "a.txt", b"a")
    write_file(repo / "sub" / "deeper" / "b.txt", b"bb")
    write_file(repo / "sub" / ".secret.txt", b"hidden")
    write_file(repo / "subway.txt", b"not in sub")
    write_file(repo / "sub0" / "c.txt", b"not in sub either")
    write_file(repo / ".hidden" / "c.txt", b"hidden")
    write_file(repo / "big.bin", BIG)
    return repo


def greet(conn: LineConn, words: str = "") -> str:
    """Read NAME, send ``HELLO <name> <words>``; the WELCOME line."""
    name = conn.read_line().removeprefix("NAME ")
    return conn.request(f"HELLO {name} {words}".rstrip())


def v2(raw: Callable[[], LineConn]) -> LineConn:
    conn = raw()
    assert greet(conn, "proto=2").endswith(" proto=2")
    return conn


# -- asking for v2 -------------------------------------------------------------------


def test_a_v1_greeting_is_welcomed_as_v1_and_a_v2_one_as_v2(raw: Callable[[], LineConn]) -> None:
    banner = f"filedock {__version__}"
    for words, welcome in (
        ("", f"WELCOME Client01 {banner}"),
        ("filedock-client/1.0", f"WELCOME Client02 {banner}"),
        ("proto=2", f"WELCOME Client03 {banner} proto=2"),
        ("proto=2 filedock-client/2.0", f"WELCOME Client04 {banner} proto=2"),
    ):
        conn = raw()
        assert greet(conn, words) == welcome
        assert conn.request("EXIT") == "BYE"  # its slot is free for the next


def test_the_token_and_proto_may_come_in_any_order(
    token_server: ServerThread,
) -> None:
    for words in ("token=alpha-123 proto=2", "proto=2 token=beta-456", "x proto=2 token=alpha-123"):
        with LineConn(token_server.port) as conn:
            assert greet(conn, words).endswith(" proto=2"), words
            assert conn.request("PING") == "PONG"


def test_v1_and_v2_greetings_get_the_same_answers_but_help(
    raw: Callable[[], LineConn],
) -> None:
    old, new = raw(), v2(raw)
    greet(old)
    for line in ("PING", "UPTIME", "ABOUT", "hello there", "GET nope.txt", "LIST nope"):
        assert old.request(line) == new.request(line), line
    assert old.request("HELP") == "HELP " + p.HELP_TEXT_V1
    assert new.request("HELP") == "HELP " + p.HELP_TEXT


def test_the_library_asks_for_v2_and_shows_the_welcome_without_it(
    connect: Callable[..., Client],
) -> None:
    client = connect()
    assert client.protocol == 2
    assert client.server == f"filedock {__version__}"


def test_the_prompt_greets_as_before(
    port: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", TypedAtATerminal("exit\n"))  # piped: no greeting
    monkeypatch.setenv("FILEDOCK_HISTORY_FILE", os.devnull)
    code = client_main(["--port", port])
    out = capsys.readouterr().out
    assert code == 0
    assert f"[SERVER] WELCOME Client01 | filedock {__version__}\n" in out
    assert "proto" not in out


# -- HASH ----------------------------------------------------------------------------


def test_hash_answers_size_digest_and_mtime_as_list_does(
    tree: Path, raw: Callable[[], LineConn], connect: Callable[..., Client]
) -> None:
    conn = v2(raw)
    records = {
        record.split("\t")[0]: record.split("\t")
        for record in (conn.read_line() for _ in range(int(conn.request("LIST").split()[1])))
    }
    path, size, mtime = records["big.bin"]
    assert conn.request("HASH big.bin") == f"HASH {size} {BIG_SHA} {mtime} big.bin"
    assert conn.request("hash sample.txt") == (
        f"HASH 6 {SAMPLE_SHA} {records['sample.txt'][2]} sample.txt"
    )
    digest = connect().hash("sub/deeper/b.txt")
    assert (digest.path, digest.size) == ("sub/deeper/b.txt", 2)
    assert digest.sha256 == hashlib.sha256(b"bb").hexdigest()
    assert int(digest.mtime.timestamp()) == int((tree / "sub/deeper/b.txt").stat().st_mtime)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("nope.txt", "not-found"),
        (".hidden/c.txt", "forbidden"),
        ("sub/.secret.txt", "forbidden"),
        ("../repo/sample.txt", "forbidden"),
        ("/etc/passwd", "forbidden"),
        ("sub", "forbidden"),
    ],
)
def test_hash_refuses_what_get_refuses(
    tree: Path, raw: Callable[[], LineConn], path: str, code: str
) -> None:
    conn = v2(raw)
    get = conn.request(f"GET {path}")
    assert get.startswith(f"ERR {code} ")
    assert conn.request(f"HASH {path}") == get
    assert conn.request("PING") == "PONG"


def test_hash_of_a_file_that_is_not_there_raises(connect: Callable[..., Client]) -> None:
    client = connect()
    with pytest.raises(NotFound):
        client.hash("nope.txt")
    with pytest.raises(Forbidden):
        client.hash(".hidden")
    assert client.ping() >= 0  # the session goes on


def test_hash_without_a_path_is_a_bad_request(raw: Callable[[], LineConn]) -> None:
    assert v2(raw).request("HASH") == "ERR bad-request HASH needs a path: HASH <path>"


# -- RANGE ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 1, 1024 * 1024, len(BIG) - 1, len(BIG)])
def test_range_sends_the_rest_from_the_offset(
    tree: Path, raw: Callable[[], LineConn], offset: int
) -> None:
    conn = v2(raw)
    header = conn.request(f"RANGE {offset} {BIG_SHA} big.bin")
    assert header == f"PART {offset} {len(BIG)} {BIG_SHA} big.bin"
    assert conn.read_exactly(len(BIG) - offset) == BIG[offset:]
    assert conn.request("PING") == "PONG"  # exactly the part came: the stream is in step


def test_range_of_a_small_file_at_its_middle_and_its_end(raw: Callable[[], LineConn]) -> None:
    conn = raw()
    greet(conn)  # served to v1 greetings too
    conn.send_line(f"RANGE 3 {SAMPLE_SHA} sample.txt")
    conn.send_line(f"RANGE 6 {SAMPLE_SHA} sample.txt")
    conn.send_line("PING")  # pipelined behind both
    assert conn.read_line() == f"PART 3 6 {SAMPLE_SHA} sample.txt"
    assert conn.read_exactly(3) == SAMPLE[3:]
    assert conn.read_line() == f"PART 6 6 {SAMPLE_SHA} sample.txt"  # complete: no bytes
    assert conn.read_line() == "PONG"


def test_range_past_the_end_is_a_bad_range(raw: Callable[[], LineConn]) -> None:
    conn = v2(raw)
    reply = conn.request(f"RANGE 7 {SAMPLE_SHA} sample.txt")
    assert reply == "ERR bad-range offset 7 is past the end of the file (6 bytes)"
    assert conn.request("PING") == "PONG"


def test_range_with_another_digest_is_changed(raw: Callable[[], LineConn]) -> None:
    conn = v2(raw)
    other = hashlib.sha256(b"another file").hexdigest()
    for offset in (0, 3, 99):  # the digest is checked first, the offset after
        assert conn.request(f"RANGE {offset} {other} sample.txt").startswith("ERR changed ")
    assert conn.request("PING") == "PONG"


def test_range_refuses_what_get_refuses(tree: Path, raw: Callable[[], LineConn]) -> None:
    conn = v2(raw)
    assert conn.request(f"RANGE 0 {SAMPLE_SHA} nope.txt").startswith("ERR not-found ")
    assert conn.request(f"RANGE 0 {SAMPLE_SHA} .hidden/c.txt").startswith("ERR forbidden ")
    assert conn.request(f"RANGE 0 {SAMPLE_SHA} ../x").startswith("ERR forbidden ")
    assert conn.request(f"RANGE x {SAMPLE_SHA} sample.txt").startswith("ERR bad-request ")
    assert conn.request("RANGE").startswith("ERR bad-request RANGE needs an offset")


def test_range_after_the_file_changed_is_changed(
    repo: Path, connect: Callable[..., Client]
) -> None:
    client = connect()
    before = client.hash("sample.txt")
    path = repo / "sample.txt"
    stat = path.stat()
    path.write_bytes(b"HELLO\n")  # same size, mtime put back: the ctime still tells
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(Changed):
        client.get_range("sample.txt", 2, before.sha256, io.BytesIO())
    after = client.hash("sample.txt")
    assert after.sha256 == hashlib.sha256(b"HELLO\n").hexdigest()


def test_the_library_receives_a_part(tree: Path, connect: Callable[..., Client]) -> None:
    client = connect()
    seen: list[TransferProgress] = []
    sink = io.BytesIO()
    part = client.get_range("big.bin", 1000, BIG_SHA, sink, progress=seen.append)
    assert part == p.PartReply(1000, len(BIG), BIG_SHA, "big.bin")
    assert sink.getvalue() == BIG[1000:]
    # done counts the file's bytes from the offset; bytes_done those this call received.
    last = seen[-1]
    assert (last.done, last.total) == (len(BIG), len(BIG))
    assert (last.bytes_done, last.bytes_total) == (len(BIG) - 1000, len(BIG) - 1000)
    assert (last.path, last.files_done, last.files_total) == ("big.bin", 0, 1)
    # Joined to the bytes before the offset, it is the file.
    assert hashlib.sha256(BIG[:1000] + sink.getvalue()).hexdigest() == BIG_SHA
    end = io.BytesIO()
    assert client.get_range("big.bin", len(BIG), BIG_SHA, end).length == 0
    assert end.getvalue() == b""
    with pytest.raises(BadRange):
        client.get_range("big.bin", len(BIG) + 1, BIG_SHA, io.BytesIO())
    assert client.ping() >= 0


def test_range_over_tls(tls_server: ServerThread, ca_file: str, repo: Path) -> None:
    write_file(repo / "big.bin", BIG)
    with Client(HOST, tls_server.port, tls=client_context(ca_file), timeout=10) as client:
        sink = io.BytesIO()
        client.get_range("big.bin", 12345, BIG_SHA, sink)
        assert sink.getvalue() == BIG[12345:]
        assert client.ping() >= 0


# -- LIST <folder> -------------------------------------------------------------------


def listing(conn: LineConn, line: str) -> list[str]:
    header = conn.request(line)
    assert header.startswith("FILES "), header
    return [conn.read_line().split("\t")[0] for _ in range(int(header.split()[1]))]


def test_list_of_a_folder_is_the_listing_s_part_under_it(
    tree: Path, raw: Callable[[], LineConn]
) -> None:
    conn = v2(raw)
    everything = listing(conn, "LIST")
    assert everything == [
        "big.bin",
        "sample.txt",
        "sub/a.txt",
        "sub/deeper/b.txt",
        "sub0/c.txt",
        "subway.txt",
    ]
    assert listing(conn, "LIST sub") == ["sub/a.txt", "sub/deeper/b.txt"]
    assert listing(conn, "list sub/") == ["sub/a.txt", "sub/deeper/b.txt"]
    assert listing(conn, "LIST sub/deeper") == ["sub/deeper/b.txt"]
    # Records are the whole listing's, field for field.
    conn.send_line("LIST sub/deeper")
    assert conn.read_line() == "FILES 1"
    folder_record = conn.read_line()
    conn.send_line("LIST")
    whole = [conn.read_line() for _ in range(int(conn.read_line().split()[1]))]
    assert folder_record in whole


@pytest.mark.parametrize(
    "folder",
    [
        "nope",
        "sub/nope",
        ".hidden",
        "sub/.secret.txt",
        "../repo",
        "/",
        "/sub",
        "sub/..",
        ".",
        "sample.txt",
        "su",
        "sub//deeper",
    ],
)
def test_list_of_a_folder_that_is_not_there_or_refused_is_empty(
    tree: Path, raw: Callable[[], LineConn], folder: str
) -> None:
    conn = v2(raw)
    assert conn.request(f"LIST {folder}") == "FILES 0"
    assert conn.request("PING") == "PONG"


def test_the_library_lists_a_folder(tree: Path, connect: Callable[..., Client]) -> None:
    client = connect()
    assert [info.path for info in client.list("sub")] == ["sub/a.txt", "sub/deeper/b.txt"]
    assert client.list("nope") == []
    assert len(client.list()) == 6


# -- the command line ----------------------------------------------------------------


def test_hash_prints_lines_sha256sum_can_check(
    tree: Path, port: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = client_main(["--port", port, "hash", "sample.txt", "sub/deeper/b.txt"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out == (
        f"{SAMPLE_SHA}  sample.txt\n{hashlib.sha256(b'bb').hexdigest()}  sub/deeper/b.txt\n"
    )


def test_hash_of_a_missing_file_says_so_and_prints_the_others(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = client_main(["--port", port, "hash", "nope.txt", "sample.txt"])
    out, err = capsys.readouterr()
    assert code != 0
    assert out == f"{SAMPLE_SHA}  sample.txt\n"
    assert "ERR not-found" in err
    assert "nope.txt" in err


def test_list_of_a_folder_on_the_command_line(
    tree: Path, port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert client_main(["--port", port, "list", "sub", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"sub/a.txt"' in out
    assert '"sub/deeper/b.txt"' in out
    assert "sample.txt" not in out


def test_the_prompt_hashes_and_lists_a_folder(tree: Path, connect: Callable[..., Client]) -> None:
    from filedock.cli.shell import Shell

    out = io.StringIO()
    shell = Shell(connect(), out=out, err=io.StringIO(), line_editing=False, colour=False)
    assert shell.execute("hash sample.txt") is False
    assert shell.execute("list sub/deeper") is False
    assert shell.execute(f"range 0 {SAMPLE_SHA} sample.txt") is False  # for the library only
    lines = out.getvalue().splitlines()
    assert lines[0] == f"{SAMPLE_SHA}  sample.txt"
    assert lines[1] == "[SERVER] --- FILES ---"
    assert lines[2].startswith("sub/deeper/b.txt  ")
    assert lines[3] == "[SERVER] -----"
    assert lines[4:] == ["[CLIENT] range <offset> <sha256> <path>: not available at this prompt"]


# -- a file that changes while its part is sent ---------------------------------------

LARGE = 32 * 1024 * 1024  # more than the socket buffers hold: still sending when it changes


def large_log(repo: Path, raw: Callable[[], LineConn]) -> tuple[bytes, str, LineConn]:
    """``big.log`` of LARGE random bytes, its digest, and a v2 connection to ask for it."""
    data = os.urandom(LARGE)
    write_file(repo / "big.log", data)
    conn = raw()
    conn.timeout = 30
    greet(conn, "proto=2")
    return data, hashlib.sha256(data).hexdigest(), conn


def test_a_file_growing_during_a_part_sends_exactly_the_part(
    repo: Path, raw: Callable[[], LineConn]
) -> None:
    data, digest, conn = large_log(repo, raw)
    offset = LARGE // 2
    conn.send(f"RANGE {offset} {digest} big.log\nPING\n")  # pipelined behind the body
    assert conn.read_line() == f"PART {offset} {LARGE} {digest} big.log"
    with open(repo / "big.log", "ab") as file:
        file.write(b"appended meanwhile\n" * 1000)
    assert conn.read_exactly(LARGE - offset) == data[offset:]
    assert conn.read_line() == "PONG"


def test_a_file_shrinking_during_a_part_cuts_the_connection(
    repo: Path, raw: Callable[[], LineConn]
) -> None:
    _, digest, conn = large_log(repo, raw)
    conn.send(f"RANGE 1000 {digest} big.log\nPING\n")
    assert conn.read_line() == f"PART 1000 {LARGE} {digest} big.log"
    os.truncate(repo / "big.log", 0)  # rotated: the announced bytes no longer exist
    with pytest.raises(AssertionError, match="closed before the body ended"):
        conn.read_exactly(LARGE - 1000)


def test_the_files_under_a_folder_are_cut_from_the_sorted_listing() -> None:
    from filedock.server.repository import records_in

    paths = ["doc", "docs-a.txt", "docs.txt", "docs/a", "docs/b/c", "docs0", "docsz/d", "e"]
    files = [(path, 1, 0) for path in sorted(paths)]
    assert [record[0] for record in records_in(files, "docs")] == ["docs/a", "docs/b/c"]
    assert [record[0] for record in records_in(files, "docs/b")] == ["docs/b/c"]
    assert records_in(files, "doc") == []
    assert records_in([], "docs") == []
    # ("docs/" is "docs", and "" holds nothing: Repository.records_under, in
    # tests/unit/test_listing_scan.py.)
