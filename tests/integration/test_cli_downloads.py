"""`get` and `mirror` on the command line: options, patterns, folders, what each outcome
prints and exits with, and --json; against an in-process server.

The prompt runs the same code (filedock.cli.transfers); its own reading of a
`get` line is tested at the end. Resuming after Ctrl-C on a terminal is in
tests/e2e/test_shell_pty.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from filedock.cli.exitcodes import ExitCode
from filedock.cli.shell import Shell
from filedock.client.client import Client
from tests.conftest import SAMPLE
from tests.integration import test_oneshot
from tests.integration.test_oneshot import Run
from tests.support import ServerThread, write_file

run = test_oneshot.run  # the fixture: client_main's exit status, stdout and stderr

SAMPLE_SHA = hashlib.sha256(SAMPLE).hexdigest()


@pytest.fixture
def tree(repo: Path) -> Path:
    """sample.txt, docs/a.txt, docs/b.md, docs/sub/c.txt and notes.txt in the repository."""
    write_file(repo / "docs" / "a.txt", b"a\n")
    write_file(repo / "docs" / "b.md", b"bb\n")
    write_file(repo / "docs" / "sub" / "c.txt", b"ccc\n")
    write_file(repo / "notes.txt", b"notes\n")
    return repo


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too), by its relative path."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            found[path.relative_to(folder).as_posix()] = path.read_bytes()
    return found


# -- get: where files go --------------------------------------------------------------


def test_o_names_the_folder_and_capital_o_the_file(run: Run, port: str, tmp_path: Path) -> None:
    code, out, err = run("--port", port, "get", "sample.txt", "-O", str(tmp_path / "mine.txt"))
    assert (code, err) == (0, "")
    assert (tmp_path / "mine.txt").read_bytes() == SAMPLE
    assert out == f"[CLIENT] Saved file to: {tmp_path / 'mine.txt'}\n[CLIENT] SHA256 verify: PASS\n"
    code, out, err = run("--port", port, "get", "sample.txt", "-o", str(tmp_path / "in"))
    assert (code, err) == (0, "")
    assert (tmp_path / "in" / "sample.txt").read_bytes() == SAMPLE


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "sample.txt", "notes.txt", "-O", "one"],
        ["get", "-r", "docs", "-O", "one"],
        ["get", "sample.txt", "-O", "one", "-o", "dir"],
    ],
    ids=["several", "recursive", "with -o"],
)
def test_capital_o_with_more_than_one_file_is_a_usage_error(
    run: Run, port: str, tmp_path: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run("--port", port, *argv)
    assert code == ExitCode.USAGE
    assert out == ""
    assert "-O" in err
    assert not (tmp_path / "one").exists()


def test_capital_o_with_a_pattern_matching_several_is_refused(
    run: Run, port: str, tree: Path, tmp_path: Path
) -> None:
    code, out, err = run("--port", port, "get", "docs/*", "-O", str(tmp_path / "one"))
    assert code == ExitCode.USAGE
    assert "matches 2" in err
    assert not (tmp_path / "one").exists()


def test_r_fetches_a_folder_at_the_server_s_paths(
    run: Run, port: str, tree: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run("--port", port, "get", "-r", "docs", "-o", str(out_dir))
    assert (code, err) == (0, "")
    assert files_under(out_dir) == {
        "docs/a.txt": b"a\n",
        "docs/b.md": b"bb\n",
        "docs/sub/c.txt": b"ccc\n",
    }
    assert out.count("SHA256 verify: PASS") == 3


def test_r_takes_sizes_and_mtimes_from_the_listing_and_asks_no_hash(
    run: Run, server: ServerThread, port: str, tree: Path, tmp_path: Path
) -> None:
    """The listing already said each file's mtime: a HASH after each GET would double
    the requests a folder of small files costs the server."""
    os.utime(tree / "docs" / "a.txt", (1_600_000_000, 1_600_000_000))
    code, _, err = run("--port", port, "get", "-r", "docs", "-o", str(tmp_path / "out"))
    assert (code, err) == (0, "")
    requests = server.server.context.stats.requests
    assert (requests["list"], requests["get"], requests["hash"]) == (1, 3, 0)
    assert (tmp_path / "out" / "docs" / "a.txt").stat().st_mtime == 1_600_000_000


def test_r_with_a_file_fetches_the_file(run: Run, port: str, tmp_path: Path) -> None:
    code, _, err = run("--port", port, "get", "-r", "sample.txt", "-o", str(tmp_path))
    assert (code, err) == (0, "")
    assert (tmp_path / "sample.txt").read_bytes() == SAMPLE


def test_a_folder_without_r_says_how_to_get_it(
    run: Run, port: str, tree: Path, tmp_path: Path
) -> None:
    code, out, err = run("--port", port, "get", "docs", "-o", str(tmp_path / "out"))
    assert code == ExitCode.NOT_AVAILABLE
    assert out == ""
    assert err == "[CLIENT] docs is a folder: `list docs` or `get -r docs`\n"
    assert not (tmp_path / "out" / "docs").exists()


def test_dot_is_the_whole_repository(run: Run, port: str, tree: Path, tmp_path: Path) -> None:
    code, out, err = run("--port", port, "get", ".", "-o", str(tmp_path / "out"))
    assert (code, out) == (ExitCode.NOT_AVAILABLE, "")
    assert err == "[CLIENT] . is a folder: `list` or `get -r .`\n"
    code, _, err = run("--port", port, "get", "-r", ".", "-o", str(tmp_path / "out"))
    assert (code, err) == (0, "")
    assert len(files_under(tmp_path / "out")) == 5


def test_a_leading_dot_slash_is_dropped(run: Run, port: str, tree: Path, tmp_path: Path) -> None:
    code, _, err = run("--port", port, "get", "./docs/a.txt", "-o", str(tmp_path))
    assert (code, err) == (0, "")
    assert (tmp_path / "docs" / "a.txt").read_bytes() == b"a\n"


# -- get: patterns ----------------------------------------------------------------------


def test_a_pattern_fetches_what_it_matches_one_level_deep(
    run: Run, port: str, tree: Path, tmp_path: Path
) -> None:
    code, out, err = run("--port", port, "get", "docs/*.txt", "*.txt", "-o", str(tmp_path / "out"))
    assert (code, err) == (0, "")
    assert files_under(tmp_path / "out") == {
        "docs/a.txt": b"a\n",
        "notes.txt": b"notes\n",
        "sample.txt": SAMPLE,
    }  # not docs/sub/c.txt: * does not cross a /
    assert out.count("SHA256 verify: PASS") == 3


def test_a_pattern_with_r_takes_the_folders_it_matches(
    run: Run, port: str, tree: Path, tmp_path: Path
) -> None:
    code, _, err = run("--port", port, "get", "-r", "docs/s*", "-o", str(tmp_path / "out"))
    assert (code, err) == (0, "")
    assert files_under(tmp_path / "out") == {"docs/sub/c.txt": b"ccc\n"}


def test_a_pattern_that_matches_nothing_is_an_error(
    run: Run, port: str, tree: Path, tmp_path: Path
) -> None:
    code, out, err = run(
        "--port", port, "get", "docs/*.pdf", "sample.txt", "-o", str(tmp_path / "out")
    )
    assert code == ExitCode.NOT_AVAILABLE
    assert err == "[CLIENT] No file on the server matches docs/*.pdf\n"
    assert "SHA256 verify: PASS" in out  # the other file is still fetched
    assert files_under(tmp_path / "out") == {"sample.txt": SAMPLE}


# -- get: what is already there ---------------------------------------------------------


def test_each_outcome_has_its_line_and_no_clobber_exits_9(
    run: Run, port: str, tmp_path: Path
) -> None:
    dest = tmp_path / "sample.txt"
    argv = ["--port", port, "get", "sample.txt", "-o", str(tmp_path)]
    assert run(*argv)[0] == 0
    code, out, err = run(*argv)
    assert (code, out, err) == (0, f"[CLIENT] Skipped (up to date): {dest}\n", "")

    dest.write_bytes(b"mine\n")
    code, out, err = run(*argv, "--no-clobber")
    assert code == ExitCode.KEPT
    assert out == f"[CLIENT] Kept (--no-clobber; it differs from the server's): {dest}\n"
    assert dest.read_bytes() == b"mine\n"

    code, out, err = run(*argv)
    assert (code, err) == (0, "")
    assert out == (
        f"[CLIENT] Saved file to: {dest}\n"
        "[CLIENT] SHA256 verify: PASS (replaced a different local file)\n"
    )
    assert dest.read_bytes() == SAMPLE


def test_no_resume_asks_the_library_not_to_resume(
    run: Run, port: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []
    original = Client.get_many

    def spy(self: Client, paths: Any, dest: Any, **options: Any) -> Any:
        asked.append({key: options[key] for key in ("resume", "no_clobber")})
        return original(self, paths, dest, **options)

    monkeypatch.setattr(Client, "get_many", spy)
    assert run("--port", port, "get", "sample.txt", "-o", str(tmp_path))[0] == 0
    assert run("--port", port, "get", "sample.txt", "-o", str(tmp_path), "--no-resume")[0] == 0
    assert run("--port", port, "get", "sample.txt", "-o", str(tmp_path), "--no-clobber")[0] == 0
    assert asked == [
        {"resume": True, "no_clobber": False},
        {"resume": False, "no_clobber": False},
        {"resume": True, "no_clobber": True},
    ]


# -- get --json ---------------------------------------------------------------------------


def test_json_is_one_object_a_line_per_file(run: Run, port: str, tmp_path: Path) -> None:
    argv = ["--port", port, "get", "sample.txt", "nope.txt", "-o", str(tmp_path), "--json"]
    code, out, err = run(*argv)
    assert code == ExitCode.NOT_AVAILABLE
    first, missing = (json.loads(line) for line in out.splitlines())
    assert first == {
        "path": "sample.txt",
        "saved_to": str(tmp_path / "sample.txt"),
        "size": len(SAMPLE),
        "sha256": SAMPLE_SHA,
        "result": "fetched",
    }
    assert missing["path"] == "nope.txt"
    assert missing["result"] == "failed"
    assert missing["error"].startswith("not-found")
    assert (missing["saved_to"], missing["size"], missing["sha256"]) == (None, None, None)
    assert "(nope.txt)" in err  # people still read why on stderr

    code, out, _ = run("--port", port, "get", "sample.txt", "-o", str(tmp_path), "--json")
    assert json.loads(out)["result"] == "skipped"


# -- mirror ---------------------------------------------------------------------------------


def test_mirror_fetches_keeps_extras_and_deletes_them_only_with_delete(
    run: Run, port: str, tree: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    write_file(copy / "extra.txt", b"mine\n")
    write_file(copy / "a.txt", b"old\n")

    before = files_under(copy)
    code, out, err = run("--port", port, "mirror", "docs", str(copy), "--dry-run")
    assert (code, err) == (0, "")
    assert files_under(copy) == before  # a dry run changes nothing
    lines = out.splitlines()
    assert f"would replace {copy / 'a.txt'} (2 B)" in lines
    assert f"would fetch {copy / 'b.md'} (3 B)" in lines
    assert f"would fetch {copy / 'sub' / 'c.txt'} (4 B)" in lines
    assert lines[-1] == (
        "[CLIENT] would fetch 2, replace 1, delete 0, fail 0; "
        "up to 9 B to fetch (dry run: nothing was changed)"
    )

    code, out, err = run("--port", port, "mirror", "docs", str(copy))
    assert (code, err) == (0, "")
    assert files_under(copy) == {
        "a.txt": b"a\n",
        "b.md": b"bb\n",
        "extra.txt": b"mine\n",  # kept without --delete
        "sub/c.txt": b"ccc\n",
    }
    summary = out.splitlines()[-1]
    assert summary.startswith("[CLIENT] fetched 2, skipped 0, replaced 1, deleted 0, failed 0")
    assert "extra.txt" not in out  # left alone, without a word

    code, out, err = run("--port", port, "mirror", "docs", str(copy), "--delete")
    assert (code, err) == (0, "")
    assert f"delete {copy / 'extra.txt'}" in out.splitlines()
    assert out.splitlines()[-1].startswith(
        "[CLIENT] fetched 0, skipped 3, replaced 0, deleted 1, failed 0"
    )
    assert sorted(files_under(copy)) == ["a.txt", "b.md", "sub/c.txt"]

    code, out, _ = run("--port", port, "mirror", "docs", str(copy), "--dry-run")
    assert code == 0
    assert out == (
        "[CLIENT] would fetch 0, replace 0, delete 0, fail 0; "
        "up to 0 B to fetch (dry run: nothing was changed)\n"
    )


def test_mirror_json(run: Run, port: str, tree: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    code, out, err = run("--port", port, "mirror", "docs", str(copy), "--json")
    assert (code, err) == (0, "")
    documents = [json.loads(line) for line in out.splitlines()]
    changes, summary = documents[:-1], documents[-1]["summary"]
    assert sorted((change["action"], change["path"]) for change in changes) == [
        ("fetch", "docs/a.txt"),
        ("fetch", "docs/b.md"),
        ("fetch", "docs/sub/c.txt"),
    ]
    assert all(change["dry_run"] is False for change in changes)
    assert {change["local"] for change in changes} == {
        str(copy / "a.txt"),
        str(copy / "b.md"),
        str(copy / "sub" / "c.txt"),
    }
    assert (summary["fetched"], summary["failed"], summary["bytes"]) == (3, 0, 9)


def test_mirror_of_everything(run: Run, port: str, tree: Path, tmp_path: Path) -> None:
    code, _, err = run("--port", port, "mirror", str(tmp_path / "all"))
    assert (code, err) == (0, "")
    assert sorted(files_under(tmp_path / "all")) == [
        "docs/a.txt",
        "docs/b.md",
        "docs/sub/c.txt",
        "notes.txt",
        "sample.txt",
    ]


# -- the prompt reads the same commands -----------------------------------------------------


@pytest.fixture
def shell(connect: Callable[..., Client], tmp_path: Path) -> tuple[Shell, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    prompt = Shell(connect(), tmp_path / "dl", out=out, err=err, line_editing=False, colour=False)
    return prompt, out, err


def test_the_prompt_takes_what_tab_completes_and_a_leading_dot_slash(
    shell: tuple[Shell, io.StringIO, io.StringIO], tree: Path, tmp_path: Path
) -> None:
    """TAB completes `get do` to `get docs/`: Enter then gets the folder's hint, not the
    server's `forbidden path has an empty component`; `./sample.txt` is sample.txt."""
    prompt, out, _ = shell
    for typed in ("get docs/", "get ./docs", "get docs//"):
        assert prompt.execute(typed) is False
        assert out.getvalue().splitlines()[-1] == (
            "[CLIENT] docs is a folder: `list docs` or `get -r docs`"
        ), typed
        assert prompt.status == 5
    assert prompt.execute("get ./sample.txt") is False
    assert prompt.status == 0
    assert (tmp_path / "dl" / "sample.txt").read_bytes() == SAMPLE
    assert prompt.execute("get -r ./docs/sub/") is False
    assert files_under(tmp_path / "dl" / "docs") == {"sub/c.txt": b"ccc\n"}
    assert "forbidden" not in out.getvalue()


def test_the_prompt_takes_get_options_and_patterns(
    shell: tuple[Shell, io.StringIO, io.StringIO], tree: Path, tmp_path: Path
) -> None:
    prompt, out, err = shell
    assert prompt.execute("get -r docs/sub 'notes*'") is False
    assert files_under(tmp_path / "dl") == {"docs/sub/c.txt": b"ccc\n", "notes.txt": b"notes\n"}
    assert prompt.execute(f"get sample.txt -O {tmp_path / 'x.txt'}") is False
    assert (tmp_path / "x.txt").read_bytes() == SAMPLE
    assert prompt.execute("get docs") is False
    assert prompt.execute("get a b -O c") is False
    assert prompt.execute("get 'unclosed") is False
    assert prompt.execute("get --help") is False
    assert prompt.execute("mirror") is False
    text, _, shown_help = out.getvalue().partition("usage: get")
    assert "-O FILE" in shown_help  # printed where the prompt prints
    assert "the following arguments are required: DIR" in shown_help
    lines = text.splitlines()  # the prompt's errors go with its other lines
    assert lines[-3] == "[CLIENT] docs is a folder: `list docs` or `get -r docs`"
    assert "-O" in lines[-2]
    assert lines[-1].startswith("[CLIENT] cannot read the line")
    assert out.getvalue().count("SHA256 verify: PASS") == 3
    assert err.getvalue() == ""  # no progress: not a terminal


def test_the_prompt_fetches_a_name_with_spaces_as_tab_completes_it(
    shell: tuple[Shell, io.StringIO, io.StringIO], repo: Path, tmp_path: Path
) -> None:
    write_file(repo / "my notes.txt", b"spaces\n")
    prompt, out, _ = shell
    assert prompt.execute("get my notes.txt") is False  # as typed, unquoted: the one file
    assert (tmp_path / "dl" / "my notes.txt").read_bytes() == b"spaces\n"
    assert prompt.execute("get sample.txt 'my notes.txt'") is False  # several, quoted
    assert out.getvalue().count("SHA256 verify: PASS") == 2
    assert out.getvalue().count("Skipped (up to date)") == 1


def test_the_prompt_mirrors(
    shell: tuple[Shell, io.StringIO, io.StringIO], tree: Path, tmp_path: Path
) -> None:
    prompt, out, err = shell
    copy = tmp_path / "copy"
    assert prompt.execute(f"mirror docs {copy} --dry-run") is False
    assert not copy.exists() or files_under(copy) == {}
    assert prompt.execute(f"mirror docs {copy}") is False
    assert sorted(files_under(copy)) == ["a.txt", "b.md", "sub/c.txt"]
    assert err.getvalue() == ""
    assert "ERR" not in out.getvalue()
    assert out.getvalue().splitlines()[-1].startswith("[CLIENT] fetched 3, skipped 0")
    assert os.path.isdir(copy)


def test_a_mirror_failure_is_a_change_and_its_status(
    run: Run, port: str, tree: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    write_file(copy / "a.txt" / "in the way", b"a folder where a file goes\n")
    code, out, err = run("--port", port, "mirror", "docs", str(copy), "--json")
    assert code == ExitCode.ERROR
    documents = [json.loads(line) for line in out.splitlines()]
    failed = [change for change in documents[:-1] if change["action"] == "fail"]
    assert [change["path"] for change in failed] == ["docs/a.txt"]
    assert failed[0]["error"]
    assert documents[-1]["summary"]["failed"] == 1
    assert err.startswith(f"[CLIENT] fail {copy / 'a.txt'}: ")  # and said for people
    assert (copy / "b.md").read_bytes() == b"bb\n"  # the others are still fetched


def test_the_prompts_get_reads_quotes_and_several_paths(
    shell: tuple[Shell, io.StringIO, io.StringIO], tree: Path, tmp_path: Path
) -> None:
    (tree / "report 2024.txt").write_bytes(b"report\n")
    prompt, out, _ = shell
    fetched = tmp_path / "dl"
    assert prompt.execute('get "report 2024.txt" sample.txt') is False
    assert (fetched / "report 2024.txt").read_bytes() == b"report\n"
    assert (fetched / "sample.txt").read_bytes() == SAMPLE
    for typed in ("get report\\ 2024.txt", "get 'report 2024.txt'", "get report 2024.txt"):
        (fetched / "report 2024.txt").unlink()
        assert prompt.execute(typed) is False  # the last: unquoted, but it names a file
        assert prompt.status == 0, typed
        assert (fetched / "report 2024.txt").read_bytes() == b"report\n", typed
    assert prompt.execute("get notes.txt docs/a.txt") is False
    assert {"notes.txt", "docs"} <= {path.name for path in fetched.iterdir()}
    assert prompt.execute("get nope.txt also-nope.txt") is False  # two names, neither there
    assert prompt.status == 5
    assert out.getvalue().count("(nope.txt)") == 1
    assert out.getvalue().count("(also-nope.txt)") == 1
