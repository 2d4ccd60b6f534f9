"""Files over loopback: LIST, GET and bare paths, the repository boundary, big
files that change or are fetched at once, cut transfers, and saving."""

from __future__ import annotations

import contextlib
import filecmp
import hashlib
import logging
import os
import re
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import filedock.server.repository
from filedock.client.client import Client, TransferProgress
from filedock.errors import Changed, ConnectionLost, IntegrityError, SaveError
from filedock.server.repository import HashCache, OpenedFile
from tests.conftest import SAMPLE
from tests.support import HOST, LineConn, ServerThread, wait_until

MiB = 1024 * 1024
SAMPLE_SHA = hashlib.sha256(SAMPLE).hexdigest()
ROOT = Path(__file__).resolve().parents[2]
SECRET = b"top secret, outside the repository\n"
# mtimes given to the test files, one second apart in this order.
BASE_TIME = datetime(2026, 11, 24, 15, 29, 28, tzinfo=UTC)

# Regular files the repository serves (besides sample.txt), with their bytes.
SERVED = {
    "B.txt": b"upper case sorts first\n",
    "a b.txt": b"a space\n",
    "a-b.txt": b"a dash\n",
    "a.txt": b"a dot\n",
    "a/b.txt": b"in folder a\n",
    "sub/a.txt": b"sub a\n",
    "sub/deeper/c.bin": bytes(range(256)) * 3,
    "dir with space/inner file.txt": b"spaces all the way\n",
    "empty.txt": b"",
}
HIDDEN = {
    ".secret": b"hidden file\n",
    ".hidden_dir/inside.txt": b"in a hidden folder\n",
    "sub/.hidden": b"hidden in sub\n",
    "dir/.hidden": b"hidden in dir\n",
}


# -- helpers -------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def make_big(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(size // MiB):
            block = os.urandom(MiB)
            digest.update(block)
            file.write(block)
    return digest.hexdigest()


def files_under(folder: Path) -> list[Path]:
    """Every non-folder entry under ``folder`` (none if it does not exist)."""
    if not folder.exists():
        return []
    return sorted(path for path in folder.rglob("*") if path.is_symlink() or not path.is_dir())


def file_time(index: int) -> datetime:
    return BASE_TIME + timedelta(seconds=index)


def stamp(path: Path, index: int) -> None:
    seconds = file_time(index).timestamp()
    os.utime(path, (seconds, seconds))


@contextlib.contextmanager
def server_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """Capture the 'filedock' loggers, even if a CLI test turned propagation off."""
    monkeypatch.setattr(logging.getLogger("filedock"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="filedock"):
        yield caplog


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in list(caplog.records)]


def greeted(server: ServerThread, timeout: float = 10.0) -> LineConn:
    conn = LineConn(server.port, timeout=timeout)
    try:
        conn.greet()
    except BaseException:
        conn.close()
        raise
    return conn


# -- the repository used by most tests ---------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the repository, holding a secret."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(SECRET)
    return folder


@pytest.fixture
def tree(repo: Path, outside: Path) -> Path:
    """``repo`` filled with served files, hidden ones and things never served."""
    for index, (name, data) in enumerate(sorted(SERVED.items()), start=1):
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stamp(path, index)
    stamp(repo / "sample.txt", 0)
    for name, data in HIDDEN.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.mkfifo(repo / "pipe")
    with contextlib.chdir(repo), socket.socket(socket.AF_UNIX) as unix:
        unix.bind("sock")  # relative: a long tmp path may not fit in sun_path
    (repo / "escape.txt").symlink_to(outside / "secret.txt")
    (repo / "escape-rel.txt").symlink_to(Path("..") / "outside" / "secret.txt")
    (repo / "outdir").symlink_to(outside, target_is_directory=True)
    (repo / "inside-link.txt").symlink_to("sample.txt")
    (repo / "dangling").symlink_to("nowhere.txt")
    (repo / "tab\tname.txt").write_bytes(b"cannot travel on one line\n")
    return repo


def expected_listing() -> list[str]:
    """The FILES records for ``tree``, in the order the contract demands."""
    records = {"sample.txt": (len(SAMPLE), 0), "inside-link.txt": (len(SAMPLE), 0)}
    for index, (name, data) in enumerate(sorted(SERVED.items()), start=1):
        records[name] = (len(data), index)
    return [
        f"{name}\t{size}\t{file_time(index).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        for name, (size, index) in sorted(records.items())
    ]


# -- LIST -------------------------------------------------------------------------------


def test_list_records_on_the_wire(tree: Path, make_server: Callable[..., ServerThread]) -> None:
    server = make_server()
    conn = greeted(server)
    try:
        expected = expected_listing()
        assert conn.request("LIST") == f"FILES {len(expected)}"
        records = [conn.read_line() for _ in expected]
        assert records == expected
        # Plain string order: "a b.txt" < "a-b.txt" < "a.txt" < "a/b.txt".
        assert records == sorted(records)
        assert [line.split("\t")[0] for line in records][1:5] == [
            "a b.txt",
            "a-b.txt",
            "a.txt",
            "a/b.txt",
        ]
        assert conn.request("PING") == "PONG"  # nothing more came after the records
    finally:
        conn.close()


def test_list_leaves_out_what_is_never_served(
    tree: Path, make_server: Callable[..., ServerThread], outside: Path
) -> None:
    server = make_server()
    with Client(HOST, server.port, timeout=10) as client:
        infos = client.list()
    paths = [info.path for info in infos]
    assert "inside-link.txt" in paths  # a symlink inside the root is a file
    assert "sub/deeper/c.bin" in paths  # subfolders are walked
    for never in (
        ".secret",
        ".hidden_dir/inside.txt",
        "sub/.hidden",
        "dir/.hidden",
        "pipe",
        "sock",
        "escape.txt",
        "escape-rel.txt",
        "outdir/secret.txt",
        "dangling",
        "tab\tname.txt",
        "sub",
        "a",
    ):
        assert never not in paths
    assert not [path for path in paths if "secret" in path or path.startswith(".")]
    sizes = {info.path: info.size for info in infos}
    assert sizes["inside-link.txt"] == len(SAMPLE)
    assert sizes["sub/deeper/c.bin"] == 768
    assert {info.path: info.mtime for info in infos}["sample.txt"] == BASE_TIME


def test_list_sees_files_added_after_start(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    server = make_server()
    with Client(HOST, server.port, timeout=10) as client:
        assert [info.path for info in client.list()] == ["sample.txt"]
        (repo / "new").mkdir()
        (repo / "new" / "later.txt").write_bytes(b"later\n")
        assert [info.path for info in client.list()] == ["new/later.txt", "sample.txt"]


# -- GET and bare paths --------------------------------------------------------------


@pytest.mark.parametrize("form", ["GET {}", "get {}", "{}"])
@pytest.mark.parametrize(
    "path",
    [
        "sample.txt",
        "a b.txt",
        "sub/a.txt",
        "sub/deeper/c.bin",
        "dir with space/inner file.txt",
        "empty.txt",
        "inside-link.txt",
    ],
)
def test_get_sends_header_and_exactly_size_bytes(
    tree: Path, make_server: Callable[..., ServerThread], form: str, path: str
) -> None:
    server = make_server()
    data = (tree / path).read_bytes()
    conn = greeted(server)
    try:
        header = conn.request(form.format(path))
        assert header == f"FILE {len(data)} {hashlib.sha256(data).hexdigest()} {path}"
        assert conn.read_exactly(len(data)) == data
        # The next line is the next reply: the body held exactly <size> bytes.
        assert conn.request("PING") == "PONG"
    finally:
        conn.close()


@pytest.mark.parametrize("line", ["sub", "sub/deeper", "a", "nope.txt", "sub/nope.txt", "pipe"])
def test_bare_line_that_is_no_file_is_a_message(
    tree: Path, make_server: Callable[..., ServerThread], line: str
) -> None:
    server = make_server()
    conn = greeted(server)
    try:
        assert conn.request(line) == f"ACK {line}"
        assert conn.request("PING") == "PONG"
    finally:
        conn.close()


def test_get_without_path_is_a_bad_request(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    server = make_server()
    conn = greeted(server)
    try:
        assert conn.request("GET").startswith("ERR bad-request ")
        assert conn.request("PING") == "PONG"
    finally:
        conn.close()


def test_library_get_saves_at_the_same_relative_path(
    tree: Path, make_server: Callable[..., ServerThread], downloads: Path
) -> None:
    server = make_server()
    with Client(HOST, server.port, timeout=10) as client:
        saved = client.get("sub/a.txt", downloads)
        assert saved == downloads / "sub" / "a.txt"
        assert saved.read_bytes() == SERVED["sub/a.txt"]
        result = client.send_line("dir with space/inner file.txt", downloads)
        assert not isinstance(result, str)
        assert result.path == downloads / "dir with space" / "inner file.txt"
        assert result.path.read_bytes() == SERVED["dir with space/inner file.txt"]
        assert client.send_line("sub", downloads) == "sub"
    assert files_under(downloads) == [
        downloads / "dir with space" / "inner file.txt",
        downloads / "sub" / "a.txt",
    ]


# -- the repository boundary -------------------------------------------------------------

FORBIDDEN = {"forbidden"}
EITHER = {"forbidden", "not-found"}


@pytest.mark.parametrize(
    ("path", "codes"),
    [
        ("../x", FORBIDDEN),
        ("../outside/secret.txt", FORBIDDEN),
        ("a/../sample.txt", FORBIDDEN),
        ("..", FORBIDDEN),
        ("sub/..", FORBIDDEN),
        ("sub/../../outside/secret.txt", FORBIDDEN),
        ("/etc/passwd", FORBIDDEN),
        ("{outside}/secret.txt", FORBIDDEN),
        ("{repo}/sample.txt", FORBIDDEN),
        ("a\\b", FORBIDDEN),
        ("..\\outside\\secret.txt", EITHER),
        ("sample\0.txt", FORBIDDEN),
        (".secret", FORBIDDEN),
        ("dir/.hidden", FORBIDDEN),
        ("sub/.hidden", FORBIDDEN),
        (".hidden_dir/inside.txt", FORBIDDEN),
        ("sub", FORBIDDEN),
        ("sub/deeper", FORBIDDEN),
        ("pipe", FORBIDDEN),
        ("sock", FORBIDDEN),
        ("escape.txt", FORBIDDEN),
        ("escape-rel.txt", FORBIDDEN),
        ("outdir", FORBIDDEN),
        ("outdir/secret.txt", FORBIDDEN),
        ("%2e%2e/x", EITHER),
        ("..%2f", EITHER),
        ("%2e%2e%2foutside%2fsecret.txt", EITHER),
        ("\uff0e\uff0e/x", EITHER),  # fullwidth dots
        ("....//x", EITHER),
        ("./sample.txt", EITHER),
        ("sample.txt/", EITHER),
        ("sample.txt/.", EITHER),
        ("nope.txt", {"not-found"}),
        ("dangling", EITHER),
    ],
)
def test_refused_paths(
    tree: Path,
    outside: Path,
    make_server: Callable[..., ServerThread],
    path: str,
    codes: set[str],
) -> None:
    path = path.format(outside=outside, repo=tree)
    server = make_server()
    # The reply must not show where the repository or the outside target is
    # (unless the client itself named it).
    private = {str(tree), os.path.realpath(tree), str(outside), os.path.realpath(outside)}
    private = {text for text in private if text not in path}
    conn = greeted(server)
    try:
        reply = conn.request(f"GET {path}")
        code = reply.split(" ")[1] if reply.startswith("ERR ") else None
        assert code in codes, reply
        assert not [text for text in private if text in reply], reply
        assert SECRET.decode().strip() not in reply
        assert conn.request("PING") == "PONG"
        # As a bare line it is no file, so a message.
        assert conn.request(path) == f"ACK {path}"
        assert conn.request("PING") == "PONG"
        assert conn.request("GET sample.txt") == f"FILE {len(SAMPLE)} {SAMPLE_SHA} sample.txt"
        assert conn.read_exactly(len(SAMPLE)) == SAMPLE
    finally:
        conn.close()


# -- big files ------------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["rewrite", "truncate"])
def test_file_changed_during_transfer_is_never_saved(
    repo: Path, make_server: Callable[..., ServerThread], downloads: Path, change: str
) -> None:
    big = repo / "big.bin"
    size = 64 * MiB
    make_big(big, size)
    server = make_server()
    changed = threading.Event()

    def mutate() -> None:
        if change == "rewrite":  # same size, same inode, other bytes
            with big.open("r+b") as file:
                for _ in range(size // MiB):
                    file.write(os.urandom(MiB))
        else:
            os.truncate(big, MiB)
        changed.set()

    mutator = threading.Thread(target=mutate, name="mutator")

    def progress(_: TransferProgress) -> None:
        # The reader stops after its first buffer until the file has changed,
        # so most of the body is sent after the change.
        if not mutator.is_alive() and not changed.is_set():
            mutator.start()
            changed.wait(30)

    try:
        with (
            Client(HOST, server.port, timeout=30) as client,
            # Never hashed, the file is sent at once and its digest after the
            # body: a change during the send is ERR changed there (Changed).
            pytest.raises((Changed, IntegrityError, ConnectionLost)),
        ):
            client.get("big.bin", downloads, progress=progress)
    finally:
        if mutator.ident is not None:
            mutator.join(30)
    assert changed.is_set(), "the file was not changed during the transfer"
    # Never big.bin. A body that did not verify leaves nothing; a send cut short
    # (the file truncated) leaves its partial and resume record, which the next
    # download's HASH finds changed.
    left = {path.name for path in files_under(downloads)}
    assert left <= {".big.bin.part", ".big.bin.resume"}


def test_three_clients_download_a_big_file_at_once(
    repo: Path,
    make_server: Callable[..., ServerThread],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each download asks HASH for the mtime after its GET: cached by then, unless
    # the file is racy (just written, as here), when it would be hashed again.
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)
    big = repo / "big.bin"
    digest = make_big(big, 50 * MiB)
    server = make_server()
    clients: list[Client] = []
    try:
        for _ in range(3):
            clients.append(Client(HOST, server.port, timeout=30))
        barrier = threading.Barrier(3, timeout=10)

        def fetch(index: int) -> Path:
            barrier.wait()
            result = clients[index].download("big.bin", tmp_path / f"downloads{index}")
            assert result.sha256 == digest
            return result.path

        with ThreadPoolExecutor(max_workers=3) as pool:
            saved = list(pool.map(fetch, range(3), timeout=90))
        for client in clients:
            assert client.ping() < 1.0  # every session goes on
    finally:
        for client in clients:
            client.close()
    assert saved == [tmp_path / f"downloads{index}" / "big.bin" for index in range(3)]
    for path in saved:
        assert filecmp.cmp(path, big, shallow=False)
        assert files_under(path.parent) == [path]
    assert server.statistics().hashings == 1


def test_two_requests_for_an_unhashed_file_hash_it_once(
    repo: Path, make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    big = repo / "big.bin"
    size = 50 * MiB
    digest = make_big(big, size)
    # Hold the hashing until both requests wait for a digest, so the second one
    # arrives while the first hashing is in progress (not after it, from the cache).
    gate = threading.Event()
    hash_calls: list[int] = []
    asked: list[str] = []
    real_hash_fd = filedock.server.repository.hash_fd
    real_sha256 = HashCache.sha256

    def gated_hash_fd(
        fd: int, key: filedock.server.repository.FileKey, cancelled: Callable[[], bool]
    ) -> str:
        hash_calls.append(key.size)
        gate.wait(30)
        return real_hash_fd(fd, key, cancelled)

    async def counted_sha256(self: HashCache, opened: OpenedFile, source: str = "") -> str:
        asked.append(opened.path)
        return await real_sha256(self, opened, source)

    monkeypatch.setattr(filedock.server.repository, "hash_fd", gated_hash_fd)
    # Every hashing in a worker, where it can be held (none on the loop).
    monkeypatch.setattr(filedock.server.repository, "INLINE_HASH_BYTES", 0)
    monkeypatch.setattr(HashCache, "sha256", counted_sha256)
    server = make_server()
    conns: list[LineConn] = []
    try:
        conns = [greeted(server, timeout=30), greeted(server, timeout=30)]
        conns[0].send_line("GET big.bin")
        wait_until(lambda: len(hash_calls) == 1, timeout=10)
        conns[1].send_line("GET big.bin")
        wait_until(lambda: server.sync(lambda: len(asked)) == 2, timeout=10)
        gate.set()
        for conn in conns:
            assert conn.read_line(timeout=30) == f"FILE {size} {digest} big.bin"
            assert hashlib.sha256(conn.read_exactly(size, timeout=30)).hexdigest() == digest
            assert conn.request("PING") == "PONG"
    finally:
        gate.set()
        for conn in conns:
            conn.close()
    assert hash_calls == [size]
    assert server.statistics().hashings == 1


def test_ping_is_prompt_while_another_client_downloads_slowly(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    big = repo / "big.bin"
    size = 64 * MiB
    digest = make_big(big, size)
    server = make_server()
    slow = greeted(server, timeout=30)
    try:
        with Client(HOST, server.port, timeout=10) as other:
            slow.send_line("GET big.bin")
            times = [other.ping() for _ in range(5)]  # while the file is hashed
            assert slow.read_line(timeout=30) == f"FILE {size} {digest} big.bin"
            received = hashlib.sha256()
            done = 0
            for _ in range(10):  # a slow reader: a little at a time, pings between
                received.update(slow.read_exactly(128 * 1024))
                done += 128 * 1024
                times.append(other.ping())
                assert other.who() == ["Client01", "Client02"]
            assert max(times) < 0.5, times
            while done < size:
                count = min(4 * MiB, size - done)
                received.update(slow.read_exactly(count, timeout=30))
                done += count
            assert received.hexdigest() == digest
        assert slow.request("PING") == "PONG"
    finally:
        slow.close()


# -- cut transfers ---------------------------------------------------------------------------

_KILLED_CLIENT = """
import sys
from filedock.client.client import Client, TransferProgress

port, dest = int(sys.argv[1]), sys.argv[2]
client = Client("127.0.0.1", port, timeout=60)

def progress(moving):
    print("receiving", client.name, flush=True)
    sys.stdin.read()  # hold the download until killed

client.get("big.bin", dest, progress=progress)
"""


def _start_and_kill_client(port: int, dest: Path) -> str:
    """Run a client that starts downloading big.bin, kill it mid-body; its name."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", _KILLED_CLIENT, str(port), str(dest)]
    with subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    ) as proc:
        assert proc.stdout is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "the client never started receiving"
            line = proc.stdout.readline().decode()
            assert line.startswith("receiving "), line
        finally:
            proc.kill()
            proc.wait(10)
    return line.split()[1]


def _reset_mid_body(port: int) -> str:
    conn = LineConn(port, timeout=30)
    try:
        name = conn.greet()
        assert conn.request("GET big.bin").startswith(f"FILE {64 * MiB} ")
        conn.read_exactly(MiB)
    finally:
        conn.reset()
    return name


@pytest.mark.parametrize("how", ["kill", "reset"])
def test_download_cut_off_by_the_client(
    repo: Path,
    make_server: Callable[..., ServerThread],
    downloads: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    make_big(repo / "big.bin", 64 * MiB)
    with server_log(caplog, monkeypatch):
        server = make_server()
        if how == "kill":
            name = _start_and_kill_client(server.port, tmp_path / "killed")
        else:
            name = _reset_mid_body(server.port)
        wait_until(lambda: server.connected_count() == 0, timeout=10)
        with Client(HOST, server.port, timeout=10) as client:
            records = {record.name: record for record in client.status()}
            assert records[name].finished is not None
            assert records[client.name].finished is None
            assert client.get("sample.txt", downloads).read_bytes() == SAMPLE
    # Its one line at INFO says it was cut short, and how much of it went.
    [cut] = [
        record
        for record in caplog.records
        if record.name.startswith("filedock") and "big.bin" in record.getMessage()
    ]
    assert cut.levelno == logging.INFO
    head = rf"Sent file 'big\.bin' size={64 * MiB} to {name} \d+\.\d{{3}}s: "
    assert re.fullmatch(head + rf"\d+ of {64 * MiB} bytes at .+, cut short: .+", cut.getMessage())
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


# -- the log ---------------------------------------------------------------------------------


def test_sent_file_is_logged(
    repo: Path,
    make_server: Callable[..., ServerThread],
    downloads: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The assignment's wording at the start (name, size, digest), then to whom.
    expected = "Sent file 'sample.txt' size=6 sha256=5891b5b522d5… to "
    with server_log(caplog, monkeypatch):
        server = make_server()
        with Client(HOST, server.port, timeout=10) as client:
            client.get("sample.txt", downloads)
            name = client.name

            def sent() -> list[logging.LogRecord]:
                return [r for r in caplog.records if r.getMessage().startswith(expected)]

            wait_until(lambda: bool(sent()), timeout=5)
    # Then the seconds, the bytes, the rate and how it ended; the same as json fields.
    [record] = sent()
    assert record.levelno == logging.INFO
    head = f"Sent file 'sample.txt' size=6 sha256={SAMPLE_SHA[:12]}… to {name} "
    assert head.startswith("Sent file 'sample.txt' size=6 sha256=5891b5b522d5… ")
    rest = r"\d+\.\d{3}s: 6 bytes at \d+(\.\d)? [KMG]?i?B/s, completed"
    assert re.fullmatch(re.escape(head) + rest, record.getMessage()), record.getMessage()
    fields = {key: getattr(record, key) for key in ("event", "client", "path", "bytes", "result")}
    assert fields == {
        "event": "sent", "client": name, "path": "sample.txt", "bytes": 6, "result": "completed",
    }  # fmt: skip
    assert record.seconds >= 0
    assert record.rate >= 0
    assert record.name.startswith("filedock")


# -- saving on the client --------------------------------------------------------------------


@pytest.mark.parametrize("obstacle", ["read-only folder", "parent is a file", "dest is a folder"])
def test_save_error_keeps_the_session(
    tree: Path, make_server: Callable[..., ServerThread], downloads: Path, obstacle: str
) -> None:
    big = tree / "sub" / "big.bin"
    make_big(big, 6 * MiB)  # over the client's 4 MiB in-line limit
    server = make_server()
    downloads.mkdir()
    before: list[Path] = []
    if obstacle == "read-only folder":
        (downloads / "sub").mkdir()
        (downloads / "sub").chmod(0o555)
        if os.access(downloads / "sub", os.W_OK):
            (downloads / "sub").chmod(0o755)
            pytest.skip("permissions are not enforced for this user (root)")
    elif obstacle == "parent is a file":
        (downloads / "sub").write_bytes(b"a file where a folder would go\n")
        before = [downloads / "sub"]
    else:
        (downloads / "sub" / "a.txt").mkdir(parents=True)
        (downloads / "sub" / "big.bin").mkdir(parents=True)
    try:
        with Client(HOST, server.port, timeout=10) as client:
            with pytest.raises(SaveError):
                client.get("sub/a.txt", downloads)
            assert client.ping() < 1.0
            with pytest.raises(SaveError):
                client.get("sub/big.bin", downloads)
            assert client.ping() < 1.0
            assert not client.closed
            # The stream is still in step: a download elsewhere works.
            assert client.get("sample.txt", downloads).read_bytes() == SAMPLE
    finally:
        if (downloads / "sub").is_dir():
            (downloads / "sub").chmod(0o755)
    assert files_under(downloads) == sorted([*before, downloads / "sample.txt"])
    if obstacle == "parent is a file":
        assert (downloads / "sub").read_bytes() == b"a file where a folder would go\n"
