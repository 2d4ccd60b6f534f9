"""``filedock completion bash|zsh``: made from the parsers, parsed by the shells, and working."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from filedock.cli import main
from filedock.cli.client import client_parser
from filedock.cli.completion import bash_script, options_of, sub_commands, zsh_script
from filedock.cli.oneshot import ONESHOT_COMMANDS
from filedock.cli.server import server_parser


def test_the_script_names_every_sub_command_and_option() -> None:
    script = bash_script()
    words = set(script.replace('"', " ").split())
    client = client_parser()
    commands = sub_commands(client)
    assert {command.word for command in ONESHOT_COMMANDS} <= set(commands)
    assert {"get", "mirror", "put"} <= set(commands)
    expected = {*options_of(server_parser()), *options_of(client), *commands}
    for sub in commands.values():
        expected.update(options_of(sub))
    assert expected - words == set()
    assert {"--status-addresses", "--no-clobber", "--json", "--recursive"} <= words


def test_the_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    assert capsys.readouterr().out == bash_script()
    assert main(["completion", "zsh"]) == 0
    assert capsys.readouterr().out == zsh_script()
    assert main(["completion", "fish"]) == 2
    assert "usage: filedock completion {bash,zsh}" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "completion" in capsys.readouterr().out


def _shell(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def test_bash_parses_it(tmp_path: Path) -> None:
    script = tmp_path / "filedock.bash"
    script.write_text(bash_script())
    result = subprocess.run([_shell("bash"), "-n", str(script)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


def test_zsh_parses_and_loads_it(tmp_path: Path) -> None:
    script = tmp_path / "filedock.zsh"
    script.write_text(zsh_script())
    zsh = _shell("zsh")
    parsed = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True)
    assert (parsed.returncode, parsed.stderr) == (0, "")
    loaded = subprocess.run(
        [zsh, "-f", "-c", f"source {script} && whence -w _filedock"],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert loaded.stdout.strip() == "_filedock: function", loaded.stderr


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("filedock cl", ["client"]),
        ("filedock co", ["completion"]),
        ("filedock client li", ["list"]),
        ("filedock-client statu", ["status"]),
        ("filedock client get --no-c", ["--no-clobber"]),
        ("filedock client list --j", ["--json"]),
        ("filedock-server --status-a", ["--status-addresses"]),
        ("filedock server --status-addresses o", ["own"]),
        ("filedock-server --log-level W", ["WARNING"]),
        ("filedock completion z", ["zsh"]),
    ],
)
def test_bash_completes(tmp_path: Path, line: str, offered: list[str]) -> None:
    script = tmp_path / "filedock.bash"
    script.write_text(bash_script())
    words = line.split(" ")
    probe = (
        f"source {script}; COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
        '_filedock; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run([_shell("bash"), "-c", probe], capture_output=True, text=True)
    assert result.stdout.split() == offered, result.stderr
