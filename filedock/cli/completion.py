"""``filedock completion bash|zsh``: shell completion made from the parsers themselves.

The words come from the argparse parsers of both programs (every option, the
client's sub-commands from the command table and their options, the choices
of options that have them), so a new option completes without a change here.
One bash function serves ``filedock``, ``filedock-server`` and
``filedock-client``; zsh loads the same function through its
``bashcompinit``, which reads bash completions.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

SHELLS = ("bash", "zsh")

# The umbrella's own words (see cli/__init__.py).
PROGRAM_WORDS = ("server", "client", "completion", "--help", "--version")


def options_of(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of ``parser`` (``-h``, ``--help``, ``--port``, …), in order."""
    return [flag for action in parser._actions for flag in action.option_strings]


def choices_of(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Per option that takes one of a few values, those values."""
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if action.option_strings and action.choices and not _is_subparsers(action):
            for flag in action.option_strings:
                found[flag] = [str(choice) for choice in action.choices]
    return found


def sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands of ``parser`` and their parsers, in order."""
    for action in parser._actions:
        if _is_subparsers(action):
            assert isinstance(action.choices, dict)
            return dict(action.choices)
    return {}


def _is_subparsers(action: argparse.Action) -> bool:
    return isinstance(action, argparse._SubParsersAction)


def _words(items: Iterable[str]) -> str:
    return " ".join(items)


def bash_script() -> str:
    """The bash completion for the three commands: ``eval "$(filedock completion bash)"``."""
    from .client import client_parser
    from .server import server_parser

    server, client = server_parser(), client_parser()
    commands = sub_commands(client)
    choices = {**choices_of(server), **choices_of(client)}
    for sub in commands.values():
        choices.update(choices_of(sub))
    sub_cases = "".join(
        f"            {word}) words={_quote(_words(options_of(sub)))} ;;\n"
        for word, sub in commands.items()
    )
    choice_cases = "".join(
        f"        {flag}) words={_quote(_words(values))} ;;\n" for flag, values in choices.items()
    )
    return f"""\
# bash completion for filedock, filedock-server and filedock-client.
# Made by `filedock completion bash` from the programs' own options; load it with
#   eval "$(filedock completion bash)"
# or save it as ~/.local/share/bash-completion/completions/filedock.
_filedock() {{
    local cur prev program start i sub words
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    case "${{COMP_WORDS[0]##*/}}" in
        filedock-server) program=server; start=1 ;;
        filedock-client) program=client; start=1 ;;
        *)
            if [[ $COMP_CWORD -eq 1 ]]; then
                COMPREPLY=($(compgen -W {_quote(_words(PROGRAM_WORDS))} -- "$cur"))
                return
            fi
            program="${{COMP_WORDS[1]}}"; start=2 ;;
    esac
    words=""
    case "$prev" in  # an option that takes one of a few values: those values
{choice_cases}    esac
    if [[ -n $words ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
        return
    fi
    case "$program" in
        server)
            words={_quote(_words(options_of(server)))} ;;
        client)
            sub=""
            for ((i = start; i < COMP_CWORD; i++)); do
                case " {_words(commands)} " in
                    *" ${{COMP_WORDS[i]}} "*) sub="${{COMP_WORDS[i]}}"; break ;;
                esac
            done
            case "$sub" in
{sub_cases}            *) words={_quote(_words([*options_of(client), *commands]))} ;;
            esac ;;
        completion)
            words={_quote(_words(SHELLS))} ;;
        *) return ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _filedock filedock filedock-server filedock-client
"""


def zsh_script() -> str:
    """The zsh completion: the bash one, through zsh's ``bashcompinit``."""
    return (
        "# zsh completion for filedock, filedock-server and filedock-client.\n"
        '# Load it with  eval "$(filedock completion zsh)"  (in ~/.zshrc, after compinit).\n'
        "autoload -U +X compinit && compinit -u\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script()
    )


def _quote(text: str) -> str:
    # Option strings and choices are plain words: double quotes are enough.
    return f'"{text}"'


def completion_main(argv: list[str]) -> int:
    """``filedock completion bash|zsh``: print the script; 2 for anything else."""
    import sys

    usage = (
        "usage: filedock completion {bash,zsh}\n"
        "  print the shell completion of filedock, filedock-server and filedock-client;\n"
        '  load it with  eval "$(filedock completion bash)"  in ~/.bashrc (zsh: ~/.zshrc)'
    )
    if argv in (["-h"], ["--help"]):
        print(usage)
        return 0
    if len(argv) != 1 or argv[0] not in SHELLS:
        print(usage, file=sys.stderr)
        return 2
    print(bash_script() if argv[0] == "bash" else zsh_script(), end="")
    return 0
