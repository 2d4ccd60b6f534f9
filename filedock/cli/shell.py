"""The interactive client: the prompt, line editing, history and completion.

Built on :class:`filedock.Client` alone; what it prints is spelled in
:mod:`filedock.screen`. On a terminal the prompt has line editing and a
history kept across sessions (the standard :mod:`readline` module, where
Python has it), and TAB completes command words and the server's file names.
Without a terminal (``batch``) it reads plain lines, so scripts can pipe
commands in, as ``sftp -b`` does: no banner and no prompts, errors on stderr,
and the run stops at the first line that fails, exiting with its status
(``keep_going``: every line is run, and the status is the first failure's).

Ctrl-C at the prompt cancels the line being typed; during a command it
stops that command (a download keeps its partial file, so the same line
resumes it) and the prompt comes back, over a new connection when the old
one was left in the middle of a reply.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TextIO, assert_never

from .. import protocol as p
from ..client.client import Client, DownloadResult
from ..errors import (
    ConnectionLost,
    FiledockError,
    IntegrityError,
    NotFound,
    ProtocolError,
    RequestError,
    SaveError,
    ServerClosing,
)
from ..safetext import is_inert
from .exitcodes import ExitCode, exit_code_for
from .hints import command_hint, path_hint
from .pager import Pager
from .pings import check_count, count_option, run_pings
from .screen import COMMANDS_LINE, NORMAL, PROGRESS_THRESHOLD, Screen, printable
from .transfer_options import (
    PROMPT_WORDS,
    GetRequest,
    HelpShown,
    PutRequest,
    UsageError,
    parse_prompt_line,
)
from .transfers import run_get, run_mirror
from .uploads import run_put

__all__ = [
    "COMMANDS_LINE",
    "PROGRESS_THRESHOLD",
    "PROMPT_WORDS",
    "Completer",
    "LineEditor",
    "Shell",
    "history_path",
    "printable",
]

HISTORY_ENV = "FILEDOCK_HISTORY_FILE"
# Lines kept in the history file; older ones are dropped when it is written.
HISTORY_LENGTH = 1000
# The file names used for completion are fetched again when older than this.
FILES_TTL = 30.0
# The verbs the prompt offers, and the prompt's own other words for them
# (``quit``): all from the protocol's command table.
SHELL_COMMANDS = tuple(command for command in p.COMMANDS if command.shell)
ALIASES = {
    alias: command.word
    for command in SHELL_COMMANDS
    if command.word is not None
    for alias in command.shell_aliases
}
COMPLETION_WORDS = tuple(
    sorted({*(command.word for command in SHELL_COMMANDS if command.word), *ALIASES, *PROMPT_WORDS})
)


def history_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the prompt's history is kept; None when there is no home to keep it in.

    ``$FILEDOCK_HISTORY_FILE`` if set, else ``$XDG_STATE_HOME/filedock/history``,
    else ``~/.local/state/filedock/history``.
    """
    env = os.environ if environ is None else environ
    override = env.get(HISTORY_ENV)
    if override:
        return Path(override).expanduser()
    state = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # the XDG spec: relative paths are ignored
        try:
            state = str(Path.home() / ".local" / "state")
        except RuntimeError:  # no home directory
            return None
    return Path(state) / "filedock" / "history"


class Completer:
    """What TAB offers: command words first, file names after ``get`` and ``hash``.

    File names come from ``client.list()``, kept for ``ttl`` seconds and
    fetched again after that or after :meth:`invalidate` (a not-found).
    """

    def __init__(
        self,
        client: Client,
        *,
        ttl: float = FILES_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._files: list[str] | None = None
        self._fetched_at = 0.0

    def invalidate(self) -> None:
        """Forget the file names: the next completion fetches them again."""
        self._files = None

    def follow(self, client: Client) -> None:
        """Fetch the names from ``client`` from now on (a new connection)."""
        self._client = client
        self.invalidate()

    def known(self) -> list[str]:
        """The file names fetched already, fresh or not; never fetches ([] if none)."""
        return self._files or []

    def is_file(self, path: str) -> bool:
        """Whether ``path`` is one of the server's files (from the cached listing)."""
        return path in self.files()

    def remember(self, files: list[p.FileInfo]) -> None:
        """Take the file names from a listing just made.

        Names with control or bidirectional characters are left out: readline
        prints the candidates as they are, so they would reach the terminal.
        """
        self._files = [info.path for info in files if is_inert(info.path)]
        self._fetched_at = self._clock()

    def files(self) -> list[str]:
        """The server's file names, from the cache while it is fresh; [] if they cannot be had."""
        if self._files is None or self._clock() - self._fetched_at > self._ttl:
            if self._client.closed:
                return []
            try:
                self.remember(self._client.list())
            except FiledockError:
                return []  # the command that follows will say what is wrong
        return self._files or []

    def candidates(self, line: str, begidx: int, endidx: int) -> list[str]:
        """Replacements for ``line[begidx:endidx]``, the word being completed."""
        text = line[begidx:endidx]
        before = line[:begidx]
        if not before.strip():
            words = [word for word in COMPLETION_WORDS if word.startswith(text.lower())]
            # A file's name alone fetches it: offer names too, once a letter is typed.
            return words + (self._paths(text) if text else [])
        verb, _, rest = line[:endidx].lstrip().partition(" ")
        if verb.lower() == "put":  # it takes local files
            return local_paths(text)
        try:
            taking_a_file = isinstance(p.parse_request(f"{verb} _"), p.Get | p.Hash)
        except RequestError:  # a verb of several arguments (range): nothing to offer
            return []
        if not taking_a_file:
            return []
        cut = len(rest) - len(text)  # the path may hold spaces: readline only replaces `text`
        whole = [path[cut:] for path in self._paths(rest)]
        if whole or not cut:
            return whole
        return self._paths(text)  # after options or other paths: `get -r do` completes `do`

    def _paths(self, prefix: str) -> list[str]:
        """Paths starting with ``prefix``, one folder level at a time (``docs/``)."""
        matches = [path for path in self.files() if path.startswith(prefix)]
        levels = set()
        for path in matches:
            slash = path.find("/", len(prefix))
            levels.add(path if slash < 0 else path[: slash + 1])
        if len(levels) == 1 and next(iter(levels)).endswith("/"):
            # One folder: offer its files, so readline fills in the folder
            # without adding a space after it.
            return matches
        return sorted(levels)


def local_paths(prefix: str) -> list[str]:
    """Local paths starting with ``prefix`` (folders with a ``/``), for ``put``;
    hidden ones only when ``prefix`` names them, as a shell offers them."""
    folder, _, start = prefix.rpartition("/")
    where = Path(os.path.expanduser(folder)) if folder else Path(".")
    if prefix.startswith("/") and not folder:
        where = Path("/")
    try:
        names = sorted(os.listdir(where))
    except OSError:
        return []
    found = []
    for name in names:
        if not name.startswith(start) or (name.startswith(".") and not start.startswith(".")):
            continue
        if not is_inert(name):
            continue  # readline prints it as it is
        path = f"{folder}/{name}" if folder or prefix.startswith("/") else name
        found.append(path + "/" if (where / name).is_dir() else path)
    return found


class LineEditor:
    """The :mod:`readline` set-up of one prompt session: completion and history.

    :meth:`start` returns None where Python has no ``readline``; :meth:`close`
    writes the history (at most HISTORY_LENGTH lines) and undoes the set-up.
    """

    def __init__(self, readline: ModuleType, completer: Completer, history: Path | None) -> None:
        self._readline = readline
        self._completer = completer
        self._history = history
        self._matches: list[str] = []
        self._old_completer = readline.get_completer()
        self._old_delims = readline.get_completer_delims()
        readline.set_completer(self._complete)
        readline.set_completer_delims(" \t\n")
        if "libedit" in (readline.__doc__ or ""):  # macOS's readline is libedit underneath
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        readline.set_history_length(HISTORY_LENGTH)
        if history is not None:
            with contextlib.suppress(OSError):  # none yet, or unreadable: start afresh
                readline.read_history_file(history)
        self._start_length: int = readline.get_current_history_length()

    @classmethod
    def start(cls, completer: Completer, history: Path | None) -> LineEditor | None:
        try:
            import readline
        except ImportError:
            return None
        return cls(readline, completer, history)

    def _complete(self, text: str, state: int) -> str | None:
        if state == 0:
            rl = self._readline
            line = rl.get_line_buffer()
            self._matches = self._completer.candidates(line, rl.get_begidx(), rl.get_endidx())
        return self._matches[state] if state < len(self._matches) else None

    def close(self) -> None:
        rl = self._readline
        rl.set_completer(self._old_completer)
        rl.set_completer_delims(self._old_delims)
        if self._history is None:
            return
        try:
            self._history.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            added = rl.get_current_history_length() - self._start_length
            if self._history.exists() and "libedit" not in (rl.__doc__ or ""):
                # Append, so two sessions at once both keep their lines.
                rl.append_history_file(max(added, 0), self._history)
            else:
                rl.write_history_file(self._history)
                os.chmod(self._history, 0o600)  # what was typed is the user's own business
        except OSError:
            pass  # a read-only home: the session still ends cleanly


class Shell:
    """A prompt loop over one connected :class:`Client`.

    ``line_editing`` (default: stdin is a terminal) turns on readline,
    history and completion; ``colour`` (default: ``out`` is a terminal and
    ``NO_COLOR`` is not set) colours the prefixes and verdicts.
    ``reconnect`` opens a new connection when Ctrl-C left the old one in the
    middle of a reply (None: the session ends there).

    ``batch`` (for input that is not a terminal) prints no greeting and no
    prompt, errors on ``err``, and stops at the first line that fails,
    returning its exit status; with ``keep_going`` it runs every line and
    returns the first failure's status. :attr:`status` is the exit status
    of the last line :meth:`execute` ran.
    """

    def __init__(
        self,
        client: Client,
        downloads: str | os.PathLike[str] = "downloads",
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        colour: bool | None = None,
        line_editing: bool | None = None,
        history_file: Path | None = None,
        reconnect: Callable[[], Client] | None = None,
        batch: bool = False,
        keep_going: bool = False,
        stdin: TextIO | None = None,
        verbosity: int = NORMAL,
        pager: bool = True,
    ) -> None:
        self.client = client
        self.pager = pager and not batch  # a person at a terminal: long tables are paged
        self.reconnect = reconnect
        self.downloads = Path(downloads)
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.batch = batch
        self.keep_going = keep_going
        self.stdin = stdin
        self.status = ExitCode.OK
        self._first_failure: ExitCode | None = None
        errors = self.err if batch else None  # a person at a terminal reads them in line
        self.screen = Screen(
            self.out, errors=errors, progress=self.err, colour=colour, verbosity=verbosity
        )
        if line_editing is None:
            line_editing = is_terminal(sys.stdin)
        self.line_editing = line_editing
        self.history_file = history_file if history_file is not None else history_path()
        self.completer = Completer(client)

    def say(self, line: str) -> None:
        self.screen.line(line)

    def _pager(self) -> Pager | None:
        """The pager for a table that may not fit: at a terminal, unless --no-pager."""
        return Pager.for_stream(self.out) if self.pager else None

    def run(self) -> int:
        """Greet, then read commands until ``exit`` or end of input; the exit status."""
        if not self.batch:
            self.screen.greeting(self.client.name, self.client.server)
        editor = LineEditor.start(self.completer, self.history_file) if self.line_editing else None
        try:
            return self._loop()
        finally:
            if editor is not None:
                editor.close()

    def _read(self) -> str:
        """The next line typed (EOFError at the end of input); a prompt only at a terminal."""
        if self.batch:
            line = (self.stdin or sys.stdin).readline()
            if not line:
                raise EOFError
            return line.rstrip("\n")
        return input(f"{printable(self.client.name)} > ")

    def _loop(self) -> int:
        while True:
            try:
                # The server's rule: only ASCII padding, so a name may end in NBSP.
                text = self._read().strip(p.LINE_PADDING)
            except EOFError:
                if self.batch:  # a script's end: leave as quietly as it came
                    self.client.exit()
                    return self._ending(ExitCode.OK)
                self.say("")
                return self._leave()
            except KeyboardInterrupt:  # cancels the line being typed, as bash and python do
                if self.batch:  # nobody is typing: Ctrl-C stops the script, as it stops sftp -b
                    self.client.exit()
                    return ExitCode.INTERRUPTED
                self.say("")
                continue
            if not text:
                continue
            try:
                if self.execute(text):
                    return self._ending(ExitCode.OK)
                if self.client.closed:  # a download that could not be saved was cut off
                    self.screen.client_error("The connection was closed to stop that download")
                    return self._ending(ExitCode.CONNECTION)
            except KeyboardInterrupt:
                if self.batch:
                    self.screen.interrupted(text if _moves_files(text) else None)
                    self.client.exit()
                    return ExitCode.INTERRUPTED
                try:
                    if not self._interrupted(text):
                        return ExitCode.CONNECTION
                except KeyboardInterrupt:  # a second Ctrl-C while reconnecting: leave
                    self.say("")
                    return ExitCode.CONNECTION
            except ServerClosing as exc:
                self.screen.server_closed(exc)
                return self._ending(ExitCode.CONNECTION)
            except ConnectionLost as exc:
                self.screen.connection_lost(str(exc))
                return self._ending(ExitCode.CONNECTION)
            except ProtocolError as exc:
                self.screen.client_error(f"The server broke the protocol: {printable(str(exc))}")
                if self.client.closed:
                    return self._ending(ExitCode.CONNECTION)
                self.status = ExitCode.ERROR
            if self.batch and self.status != ExitCode.OK:
                if self._first_failure is None:
                    self._first_failure = self.status
                if not self.keep_going:  # as sftp -b: the lines after it assumed it worked
                    self.client.exit()
                    return self._first_failure

    def _ending(self, code: ExitCode) -> int:
        """The exit status of a session ending with ``code``: at a terminal, that;
        in a script, the first line that failed, if one did."""
        if self.batch and self._first_failure is not None:
            return self._first_failure
        return code

    def _interrupted(self, text: str) -> bool:
        """Ctrl-C stopped the command ``text``: say so, and reconnect if the
        connection was left mid-reply; False when the session cannot go on."""
        self.screen.interrupted(text if _moves_files(text) else None)
        if not self.client.closed:
            return True
        if self.reconnect is None:
            self.screen.client_error("The connection was closed to stop that command")
            return False
        try:
            client = self.reconnect()
        except FiledockError as exc:
            self.screen.cannot_start(exc)
            return False
        self.client = client
        self.completer.follow(client)
        self.screen.reconnected(client.name)
        return True

    def _leave(self) -> int:
        if self.client.exit():
            self.screen.server("BYE")
        return ExitCode.OK

    def execute(self, text: str) -> bool:
        """Run one command line; ``True`` when the session is over. :attr:`status`
        is then the line's exit status."""
        self.status = ExitCode.OK
        text = ALIASES.get(text.lower(), text)
        word, _, rest = text.partition(" ")
        if word.lower() in PROMPT_WORDS:
            self.status = self._transfer(word.lower(), rest.strip(p.LINE_PADDING))
            return False
        if word.lower() == "ping" and (count := count_option(rest)) is not None:
            self.status = self._pings(count)
            return False
        try:
            request = p.parse_request(text)
        except RequestError as exc:
            self.screen.client_error(printable(exc.text))
            self.status = ExitCode.USAGE
            return False
        command = p.COMMANDS_BY_REQUEST[type(request)]
        if not command.shell:
            self.screen.client_error(f"{printable(command.usage)}: not available at this prompt")
            self.status = ExitCode.USAGE
            return False
        client = self.client
        screen = self.screen
        try:
            match request:
                case p.Ping():
                    screen.ping(client.ping())
                case p.Who():
                    screen.who(client.who())
                case p.Uptime():
                    screen.server(f"UPTIME {client.uptime()}s")
                case p.About():
                    screen.server(f"ABOUT {printable(client.about())}")
                case p.Help():
                    screen.help(client.help(), str(self.downloads))
                case p.Status():
                    records = client.status()
                    with screen.paged(self._pager()):
                        screen.status(records)
                case p.Stats():
                    screen.stats(client.stats())
                case p.ListFiles(folder):
                    files = client.list(folder)
                    if folder is None:  # the whole listing: what TAB completes from
                        self.completer.remember(files)
                    with screen.paged(self._pager()):
                        screen.files(files)
                case p.Hash(path):
                    screen.digest(client.hash(path))
                case p.Get():  # read by _transfer, with its options
                    return False
                case p.Say(message):
                    screen.ack(client.say(message))
                case p.Exit():
                    if client.exit():
                        screen.server("BYE")
                    return True
                case p.Message(message):
                    bar = screen.transfer_bar(message)
                    result = client.send_line(message, self.downloads, progress=bar)
                    if bar is not None:
                        bar.finish()
                    if isinstance(result, DownloadResult):
                        screen.download(result)
                    else:  # a line that is no command is echoed (the same rule made it one)
                        assert isinstance(result, str)
                        screen.ack(result)
                        if not self.batch:  # for a person typing; a script's stderr is for errors
                            self._hint(message)
                case p.Range() | p.Put():  # not offered here (refused above)
                    return False
                case _:
                    assert_never(request)
        except IntegrityError as exc:
            screen.integrity_failure(exc)
            self.status = exit_code_for(exc)
        except SaveError as exc:
            screen.client_error(f"Could not save the file: {printable(str(exc))}")
            self.status = exit_code_for(exc)
        except ServerClosing:
            raise
        except RequestError as exc:
            if isinstance(exc, NotFound):
                self.completer.invalidate()  # the listing we complete from is out of date
            screen.request_error(exc)
            self.status = exit_code_for(exc)
        return False

    def _pings(self, count: int) -> ExitCode:
        """``ping -c N`` (any other words after ``ping`` make a message)."""
        try:
            run_pings(self.client, check_count(count), self.screen)
        except ValueError as exc:
            self.screen.client_error(str(exc))
            return ExitCode.USAGE
        return ExitCode.OK

    def _hint(self, message: str) -> None:
        """``did you mean 'list'?`` after a message that looks like a mistyped command."""
        meant = command_hint(message, COMPLETION_WORDS) or path_hint(
            message, self.completer.known()
        )
        if meant is not None:
            typed = printable(message)
            self.screen.client(
                f"did you mean '{printable(meant)}'? (say {typed} sends it as a message)"
            )

    def _transfer(self, word: str, rest: str) -> ExitCode:
        """A ``get``, ``mirror`` or ``put`` line, with its options; its exit status."""
        try:
            request = parse_prompt_line(word, rest, self.completer.is_file, self.out)
        except UsageError as exc:
            self.screen.client_error(printable(str(exc)))
            return ExitCode.USAGE
        except HelpShown:
            return ExitCode.OK
        try:
            if isinstance(request, GetRequest):
                code = run_get(self.client, request, self.screen, self.downloads)
                if code == ExitCode.NOT_AVAILABLE:
                    self.completer.invalidate()  # the listing we complete from is out of date
                return code
            if isinstance(request, PutRequest):
                code = run_put(self.client, request, self.screen)
                self.completer.invalidate()  # the server has new files to complete
                return code
            return run_mirror(self.client, request, self.screen)
        except ServerClosing:
            raise
        except RequestError as exc:  # a folder that may not be listed
            self.screen.request_error(exc)
            return exit_code_for(exc)
        except SaveError as exc:  # a mirror's folder that cannot be made
            self.screen.client_error(printable(str(exc)))
            return exit_code_for(exc)


def _moves_files(text: str) -> bool:
    """Whether the line ``text`` moves files (``get``, ``mirror``, ``put`` or a file's name)."""
    word = text.partition(" ")[0].lower()
    return word in PROMPT_WORDS or word not in p.COMMANDS_BY_WORD


def is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False
