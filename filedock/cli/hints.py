"""``did you mean 'list'?``: the prompt's hint for a message that looks like a mistyped command.

A line that is no command is a message (the assignment's rule), so ``lsit``,
``stauts`` and ``ls`` are sent and echoed as they always were; the prompt then
says what was probably meant, as git does for a mistyped command: a word one
edit from a command word (a letter wrong, missing, extra, or two swapped), or
the word other tools use for one (``ls``, ``cd docs``), or a path of the
server's written as a shell would take it (``docs/``, ``./sample.txt``: the
server reads a bare line as a file's name only when it is one exactly).
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import protocol as p
from . import globs

# The words of shells and file-transfer programs (sftp, ftp) for what the prompt calls otherwise.
LOOKALIKES = {
    "ls": "list",
    "ll": "list",
    "dir": "list",
    "cd": "list",
    "cat": "get",
    "bye": "exit",
    "logout": "exit",
    "q": "exit",
}
# Words this short are one edit from too much ("he" from "help"): only LOOKALIKES for them.
_SHORTEST_TYPO = 3


def one_edit_apart(typed: str, word: str) -> bool:
    """Whether ``typed`` is ``word`` with one letter wrong, missing, extra, or two
    neighbours swapped (``lsit`` for ``list``)."""
    if typed == word or abs(len(typed) - len(word)) > 1:
        return False
    if len(typed) == len(word):
        wrong = [i for i, (a, b) in enumerate(zip(typed, word, strict=True)) if a != b]
        if len(wrong) == 1:
            return True
        first, *rest = wrong
        swapped = typed[first] == word[first + 1] and typed[first + 1] == word[first]
        return rest == [first + 1] and swapped
    shorter, longer = sorted((typed, word), key=len)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def command_hint(line: str, words: Iterable[str]) -> str | None:
    """What the message ``line`` probably meant, among the command ``words``
    (``list``, ``list docs``); None when it does not look like a command."""
    typed, _, rest = line.partition(" ")
    typed = typed.lower()
    meant = LOOKALIKES.get(typed)
    if meant is None and len(typed) >= _SHORTEST_TYPO:
        close = [word for word in words if one_edit_apart(typed, word)]
        # A letter wrong or two swapped is likelier than one missing or extra:
        # `stauts` is `status`, not `stats`. Two words as near: no guess.
        same_length = [word for word in close if len(word) == len(typed)]
        likeliest = same_length or close
        meant = likeliest[0] if len(likeliest) == 1 else None
    if meant is None:
        return None
    if rest and not _takes_argument(meant):
        return None  # "ping me" is a message by the rule: a command word with words after it
    return f"{meant} {rest}" if rest else meant


def _takes_argument(word: str) -> bool:
    for command in p.COMMANDS:
        if command.word == word or word in command.shell_aliases:
            return command.argument is not None
    return True  # the prompt's own words (mirror, put) take paths


def path_hint(line: str, files: Iterable[str]) -> str | None:
    """``get sample.txt`` for the message ``./sample.txt``, ``list docs`` for ``docs``
    or ``docs/``, when ``files`` (the server's, as listed) has them; else None."""
    if " " in line or globs.is_glob(line):
        return None
    path = globs.clean(line)
    if not path:
        return None
    names = list(files)
    if path in names and path != line:
        return f"get {path}"
    if any(name.startswith(path + "/") for name in names):
        return f"list {path}"
    return None
