"""The README's Python example and the library's docstring examples run, so they cannot rot.

The README's ```python block is run as it is, except that the port it names
(the default, 50000) is swapped for an in-process server's. The examples in
the docstrings of the public API are doctests run against a server holding
``sample.txt`` (b"hello\\n") and taking uploads, with ``client`` connected
first (Client01), ``port`` its port and ``filedock`` imported, in a folder
holding ``notes.txt`` (b"notes\\n") and ``photos/`` (two files) to upload.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import filedock
from filedock import errors, protocol
from filedock.client import client as client_module
from tests.support import HOST, ServerThread

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)


def test_readme_python_example_runs(
    server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 1, "the README has one ```python example; this test runs it"
    code, count = re.subn(r"\b50000\b", str(server.port), blocks[0])
    assert count >= 1, "the example must name the server's port, 50000"
    monkeypatch.chdir(tmp_path)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    lines = output.getvalue().splitlines()
    assert lines == [
        "Client01",
        "True",
        "sample.txt 6",
        "downloads/sample.txt",
        "not-found",
        "saved: 6 5891b5b522d5",
        "failed: not-found: no such file in the repository",
        "skipped",
        "1 0 6",
        "Client01 None",
        "b'hel' b'lo\\n'",
        "b'hello\\n'",
        "6 False",
        f"<Client 127.0.0.1:{server.port} Client01>",
    ]
    assert (tmp_path / "downloads" / "sample.txt").read_bytes() == b"hello\n"


# The public API whose docstrings carry examples.
DOCUMENTED = [
    client_module,
    filedock.Client,
    filedock.DownloadResult,
    filedock.UploadResult,
    filedock.TransferProgress,
    protocol.ClientRecord,
    protocol.FileInfo,
    protocol.FileDigest,
    protocol.StatRecord,
    filedock.FileStat,
    filedock.RemoteFile,
    errors.FiledockError,
]


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(recurse=True, exclude_empty=True)
    tests: list[doctest.DocTest] = []
    for obj in DOCUMENTED:
        name = getattr(obj, "__qualname__", getattr(obj, "__name__", "?"))
        found = finder.find(obj, name, module=False, globs={})
        if obj is client_module:  # the module's own docstring; its classes are listed apart
            found = [test for test in found if test.name == name]
        tests.extend(test for test in found if test.examples)
    return tests


DOCTESTS = _doctests()


def test_public_api_has_examples() -> None:
    documented = {test.name for test in DOCTESTS}
    methods = ["ping", "who", "uptime", "about", "help", "status", "list", "say"]
    methods += ["get", "download", "get_many", "send_line", "exit", "hash", "get_range"]
    methods += ["download_tree", "mirror", "upload", "upload_tree", "stats"]
    methods += ["open", "read", "stat", "exists"]
    for method in methods:
        assert f"Client.{method}" in documented, method
    names = ("Client", "DownloadResult", "ClientRecord", "FileInfo", "FileDigest", "StatRecord")
    names += ("FiledockError", "FileStat", "RemoteFile")
    for name in names:
        assert name in documented, name


@pytest.fixture
def globs(
    make_server: Callable[..., ServerThread], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    server = make_server(allow_upload=True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_bytes(b"notes\n")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"a")
    (tmp_path / "photos" / "b.jpg").write_bytes(b"b")
    with filedock.Client(HOST, server.port, timeout=10) as first:
        yield {
            "client": first,
            "port": server.port,
            "filedock": filedock,
            "Client": filedock.Client,
        }


@pytest.mark.parametrize("test", DOCTESTS, ids=[test.name for test in DOCTESTS])
def test_docstring_examples(test: doctest.DocTest, globs: dict[str, Any]) -> None:
    test.globs = dict(globs)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = io.StringIO()
    result = runner.run(test, out=report.write, clear_globs=False)
    assert result.failed == 0, report.getvalue()
