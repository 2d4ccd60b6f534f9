"""The settings of uploads: the server's options and their environment twins,
the token file's rights, and the upload log's lines."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from filedock import protocol as p
from filedock.cli.server import server_parser
from filedock.server.auth import TokenChecker, read_token_file, read_token_rights
from filedock.server.config import ServerConfig
from filedock.server.upload_area import partial_name
from filedock.server.upload_log import UploadLog

SHA = "ab" * 32


@pytest.fixture(autouse=True)
def no_upload_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALLOW_UPLOAD", "MAX_UPLOAD_SIZE", "MIN_FREE_SPACE", "UPLOAD_EXPIRY"):
        monkeypatch.delenv(f"FILEDOCK_{name}", raising=False)


def test_the_upload_options_default_to_off_4_gib_auto_and_a_day() -> None:
    args = server_parser().parse_args([])
    assert args.allow_upload is False
    assert args.max_upload_size == 4 * 1024**3
    assert args.min_free_space == -1
    assert args.upload_expiry == 86400.0
    shown = server_parser().format_help()
    assert "--allow-upload" in shown
    assert "(default: 4294967296)" in " ".join(shown.split())


def test_the_upload_options_take_sizes_and_a_switch() -> None:
    args = server_parser().parse_args(
        ["--allow-upload", "--max-upload-size", "1G", "--min-free-space", "512M"]
    )
    assert (args.allow_upload, args.max_upload_size, args.min_free_space) == (
        True,
        1024**3,
        512 * 1024**2,
    )
    assert server_parser().parse_args(["--no-allow-upload"]).allow_upload is False


@pytest.mark.parametrize(
    ("value", "on"), [("1", True), ("yes", True), ("0", False), ("off", False)]
)
def test_each_upload_option_has_its_environment_twin(
    monkeypatch: pytest.MonkeyPatch, value: str, on: bool
) -> None:
    monkeypatch.setenv("FILEDOCK_ALLOW_UPLOAD", value)
    monkeypatch.setenv("FILEDOCK_MAX_UPLOAD_SIZE", "10M")
    monkeypatch.setenv("FILEDOCK_UPLOAD_EXPIRY", "60")
    args = server_parser().parse_args([])
    assert args.allow_upload is on
    assert args.max_upload_size == 10 * 1024**2
    assert args.upload_expiry == 60.0
    assert server_parser().parse_args(["--no-allow-upload"]).allow_upload is False  # flag wins


def test_a_switch_the_environment_spells_wrong_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FILEDOCK_ALLOW_UPLOAD", "perhaps")
    with pytest.raises(SystemExit):
        server_parser()
    assert "FILEDOCK_ALLOW_UPLOAD" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"max_upload_size": -1}, "max_upload_size"),
        ({"min_free_space": -2}, "min_free_space"),
        ({"upload_expiry": 0}, "upload_expiry"),
    ],
)
def test_upload_limits_out_of_range_are_refused(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        ServerConfig(**options)


# -- the token file's rights -------------------------------------------------------------


def test_a_token_line_may_name_its_rights(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# comment\n\nplain\nreader read\nwriter read,write\nalso write\n")
    assert read_token_rights(str(tokens)) == {
        "plain": {"read"},
        "reader": {"read"},
        "writer": {"read", "write"},
        "also": {"read", "write"},  # every token reads
    }
    assert read_token_file(str(tokens)) == ["plain", "reader", "writer", "also"]
    checker = TokenChecker(read_token_rights(str(tokens)))
    assert checker.check("writer") == (True, True)
    assert checker.check("plain") == (True, False)
    assert checker.check("nope") == (False, False)
    assert checker.check(None) == (False, False)
    assert checker.accepts("reader")


def test_an_unknown_right_is_refused_with_its_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("good\nbad read,delete\n")
    with pytest.raises(ValueError, match="line 2: unknown right 'delete'"):
        read_token_rights(str(tokens))


def test_a_list_of_tokens_reads_only() -> None:
    assert TokenChecker(["a", "b"]).check("b") == (True, False)


# -- names and the log ----------------------------------------------------------------------


def test_a_partial_is_named_by_size_digest_and_path() -> None:
    name = partial_name(10, SHA, "a.txt")
    assert name.endswith(".part")
    assert name == partial_name(10, SHA, "a.txt")
    assert len({name, partial_name(11, SHA, "a.txt"), partial_name(10, SHA, "b.txt")}) == 3


def test_each_upload_is_logged_with_its_client_size_digest_time_and_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warned: list[str] = []
    noted: list[str] = []  # at INFO: a refusal
    limited: list[tuple[str, str]] = []  # at INFO, rate-limited: an upload not stored

    def limit(kind: str, message: str, *args: object, source: str, **_: Any) -> None:
        limited.append((kind, message % args))

    context = SimpleNamespace(
        warn=lambda kind, message, *args, source: warned.append(message % args),
        note=lambda kind, message, *args, source: noted.append(message % args),
        limiter=SimpleNamespace(info=limit),
    )
    session = cast(
        Any, SimpleNamespace(name="Client01", address="127.0.0.1:1", context=context, source="s")
    )
    put = p.Put(6, SHA, p.PutMode.NEW, "a.txt")
    with caplog.at_level(logging.INFO, logger="filedock.server"):
        UploadLog(session, put).stored(6)
        UploadLog(session, put, offset=2).stored(4)
    stored, resumed = (record.getMessage() for record in caplog.records)
    head = "Received file 'a.txt' size=6 sha256=abababababab… from Client01 "
    assert re.fullmatch(re.escape(head) + r"\d+\.\d{3}s: 6 bytes at \d+(\.\d)? \S+, stored", stored)
    assert re.fullmatch(r".*: 4 bytes at .*, stored, resumed from 2", resumed), resumed
    UploadLog(session, put).ended("failed (integrity), nothing placed", 6)
    UploadLog(session, put).refused("forbidden: this server does not take uploads")
    # An upload that ended without being stored: its line at INFO, rate-limited.
    [(kind, failed)] = limited
    assert kind == "upload"
    assert failed.startswith(head), failed
    assert re.search(r": 6 bytes at [\d.]+ \S+, failed \(integrity\), nothing placed$", failed)
    assert warned == []
    [refused] = noted
    assert refused == (
        "Refused upload of 'a.txt' size=6 sha256=abababababab… from Client01: "
        "forbidden: this server does not take uploads"
    )
