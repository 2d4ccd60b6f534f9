"""examples/filedock.service: a hardened unit that systemd reads without a complaint."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from filedock.cli.server import server_parser

UNIT = Path(__file__).resolve().parents[2] / "examples" / "filedock.service"


def _unit() -> configparser.ConfigParser:
    # systemd repeats keys (LoadCredential): strict=False keeps the last, enough here.
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_is_hardened() -> None:
    service = _unit()["Service"]
    assert service["DynamicUser"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service["SystemCallFilter"] == "@system-service"


def test_the_served_folder_is_the_one_it_may_write() -> None:
    service = _unit()["Service"]
    command = shlex.split(service["ExecStart"].replace("\\\n", " "))
    assert command[0].endswith("/filedock-server")
    args = server_parser().parse_args(command[1:])  # every option is a real one
    assert args.folder == service["ReadWritePaths"] == "/srv/filedock"
    assert args.host == "::"  # IPv6 and IPv4
    # Beyond loopback: TLS and tokens, both (the files systemd hands over).
    assert (args.tls_cert, args.tls_key, args.token_file) == (
        "%d/cert.pem",
        "%d/key.pem",
        "%d/tokens.txt",
    )


def test_systemd_reads_it_without_a_complaint(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze here (the INI checks above still ran)")
    # verify wants the program to exist: this environment's filedock-server.
    program = Path(sys.executable).with_name("filedock-server")
    if not program.exists():
        pytest.skip("filedock-server is not installed in this environment")
    unit = tmp_path / "filedock.service"
    unit.write_text(UNIT.read_text().replace("/opt/filedock/bin/filedock-server", str(program)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line]
    assert (result.returncode, complaints) == (0, [])
