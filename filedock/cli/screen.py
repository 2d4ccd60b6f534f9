"""What the client prints: the screen text of the prompt and the one-shot commands.

Every line a person reads is spelled here once, so the interactive shell and
``filedock-client <command>`` say the same things in the same words (the
walk-through in the README). On a terminal the ``[SERVER]``/``[CLIENT]``
prefixes, errors and the verdict of a SHA-256 check are coloured; with
colours off (not a terminal, or ``NO_COLOR`` set) the text is exactly the
plain text, byte for byte.
"""

from __future__ import annotations

import contextlib
import io
import os
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from .. import protocol as p
from ..client.client import LineTooLong
from ..client.results import (
    Change,
    DownloadResult,
    Outcome,
    TransferProgress,
    TreeSummary,
    UploadOutcome,
    UploadResult,
)
from ..errors import FiledockError, IntegrityError, RequestError, ServerClosing, ServerFull
from ..safetext import printable
from .progress import ProgressLine, clock, human_size
from .times import local_time

if TYPE_CHECKING:  # the pager module measures text with this one's display_width
    from .pager import Pager

__all__ = ["COMMANDS_LINE", "PROGRESS_THRESHOLD", "Screen", "TransferBar", "printable"]

# How much the screen says (-q, the default, -v).
QUIET, NORMAL, VERBOSE = -1, 0, 1

# Bodies larger than this get a progress bar (on a terminal only).
PROGRESS_THRESHOLD = 1024 * 1024

# Select Graphic Rendition codes; RESET ends each coloured span.
RESET = "\x1b[0m"
SERVER_STYLE = "\x1b[1;36m"  # bold cyan
CLIENT_STYLE = "\x1b[1;35m"  # bold magenta
ERROR_STYLE = "\x1b[31m"  # red
PASS_STYLE = "\x1b[1;32m"  # bold green
FAIL_STYLE = "\x1b[1;31m"  # bold red


def colour_wanted(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colours on ``stream``: only on a terminal, never with ``NO_COLOR`` set or ``TERM=dumb``."""
    env = os.environ if environ is None else environ
    if "NO_COLOR" in env or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False


def display_width(text: str) -> int:
    """The columns ``text`` takes on a terminal: wide and fullwidth characters (CJK,
    most emoji) take two, combining marks, format characters (a zero-width joiner)
    and variation selectors none, the others one."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in _ZERO_WIDTH:
            continue
        width += 2 if unicodedata.east_asian_width(char) in _WIDE else 1
    return width


_WIDE = frozenset("WF")
_ZERO_WIDTH = frozenset({"Mn", "Me", "Cf"})  # non-spacing and enclosing marks, format characters


def pad(text: str, width: int) -> str:
    """``text`` followed by the spaces that make it ``width`` columns wide on a terminal."""
    return text + " " * max(width - display_width(text), 0)


def status_lines(records: Sequence[p.ClientRecord]) -> list[str]:
    """The STATUS table: the seed's header and columns; the name column grows with the names."""
    width = max([8, *(display_width(printable(record.name)) for record in records)]) + 2
    lines = [f"{pad('CLIENT', width)}{'ACCEPTED':<21}{'FINISHED':<21}ADDR"]
    for record in records:
        accepted = p.format_status_time(record.accepted)
        finished = "None" if record.finished is None else p.format_status_time(record.finished)
        lines.append(
            f"{pad(printable(record.name), width)}{accepted:<21}{finished:<21}"
            f"{printable(record.address)}"
        )
    return lines


def file_lines(files: Sequence[p.FileInfo]) -> list[str]:
    """The FILES table: path, size (``1.0 GiB``), last modified in local time with its
    zone's name; aligned
    by the columns each path takes on a terminal (``報告.txt`` takes 8 for 6 characters)."""
    rows = [(printable(info.path), human_size(info.size), local_time(info.mtime)) for info in files]
    path_width = max((display_width(row[0]) for row in rows), default=0)
    size_width = max((len(row[1]) for row in rows), default=0)
    return [f"{pad(path, path_width)}  {size:>{size_width}}  {mtime}" for path, size, mtime in rows]


def stats_lines(figures: Mapping[str, int | float]) -> list[str]:
    """The STATS table: one figure a line, names aligned left, values right."""
    rows = [(printable(name), _figure(value)) for name, value in figures.items()]
    name_width = max((len(name) for name, _ in rows), default=0)
    value_width = max((len(value) for _, value in rows), default=0)
    return [f"{name:<{name_width}}  {value:>{value_width}}" for name, value in rows]


def _figure(value: int | float) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _in_order(order: Sequence[type[p.CommandRequest]]) -> list[p.Command]:
    """The verbs the prompt offers: those in ``order`` first, as there; then the rest."""
    rank = {request: index for index, request in enumerate(order)}
    offered = [command for command in p.COMMANDS if command.shell]
    return sorted(offered, key=lambda command: rank.get(command.request, len(order)))


# The prompt lists the verbs in the order people meet them (the README's
# walk-through quotes COMMANDS_LINE word for word); a verb of the command
# table not named here comes after these.
_GREETING_ORDER = (
    p.Help,
    p.ListFiles,
    p.Status,
    p.Who,
    p.Ping,
    p.Uptime,
    p.Get,
    p.Message,
    p.About,
    p.Exit,
)
_HELP_ORDER = (
    p.Help,
    p.ListFiles,
    p.Status,
    p.Stats,
    p.Who,
    p.Ping,
    p.Uptime,
    p.About,
    p.Get,
    p.Hash,
    p.Say,
    p.Message,
    p.Exit,
)

# The line under the greeting: every verb the prompt offers, but the ones for
# rare needs (``say``).
COMMANDS_LINE = "Commands: " + " | ".join(
    command.short_usage for command in _in_order(_GREETING_ORDER) if command.shell_greeting
)


def _help_rows(command: p.Command) -> list[tuple[str, str]]:
    """The help screen's rows for one verb: what to type, what it does."""
    text = command.shell_help or command.help
    if command.word is None:  # a line that is no command
        return [("<anything else>", text)]
    rows = [(", ".join((command.usage, *command.shell_aliases)), text)]
    if command.request is p.Ping:  # the prompt's series (cli/pings.py)
        rows.append(("ping -c <n>", "n pings, each with its round trip, then min/avg/max"))
    if command.request is p.Get:  # a file's name alone fetches it too; the prompt does more
        rows.append((f"<{command.argument}>", f"the same as {command.usage}"))
        rows.extend(_TRANSFER_ROWS)
    return rows


# The prompt's own commands and options around ``get``, which the protocol has no verb for.
_TRANSFER_ROWS = (
    ("get -r <folder>", "a folder and everything under it"),
    ("get 'docs/*.txt'", "the files a pattern matches (* stays within a folder, ** crosses them)"),
    ("get … -O <file>", "save the one file as <file>; also -o <dir>, --no-clobber, --no-resume"),
    ("mirror [folder] <dir>", "make <dir> hold exactly the server's files (--delete, --dry-run)"),
    ("put <file>…", "upload files, verified by SHA-256 (--to <folder>, -r, --replace)"),
)

# What ``help`` shows besides the server's own line: every command, one a line.
HELP_LINES = (
    *(row for command in _in_order(_HELP_ORDER) for row in _help_rows(command)),
    ("TAB, Up/Down", "complete a command or file name; recall earlier lines (on a terminal)"),
    ("Ctrl-C", "stop a download (the same get resumes it), or cancel the line being typed"),
)


def help_lines(downloads: str) -> list[str]:
    width = max(len(command) for command, _ in HELP_LINES) + 2
    return [
        f"  {command:<{width}}{text.format(downloads=downloads)}" for command, text in HELP_LINES
    ]


class Screen:
    """Prints the client's lines to ``out``; error lines to ``errors`` (``out`` by default).

    ``colour`` defaults to :func:`colour_wanted` for ``out``. ``progress``
    is where download progress bars go, when it is a terminal.

    ``verbosity`` is QUIET (``-q``: errors, and what a command was asked to
    show, but no line per file moved, no progress, no summary), NORMAL, or
    VERBOSE (``-v``: the summary after every transfer, of one file too).
    """

    def __init__(
        self,
        out: TextIO,
        *,
        errors: TextIO | None = None,
        progress: TextIO | None = None,
        colour: bool | None = None,
        verbosity: int = NORMAL,
    ) -> None:
        self.verbosity = verbosity
        self.out = out
        self.errors = errors or out
        self.progress = progress
        self.colour = colour_wanted(out) if colour is None else colour
        if errors is not None and errors is not out and colour is None:
            self.error_colour = colour_wanted(errors)
        else:
            self.error_colour = self.colour
        self._bar: TransferBar | None = None

    # -- the pieces -------------------------------------------------------------

    def _paint(self, text: str, style: str, colour: bool) -> str:
        return f"{style}{text}{RESET}" if colour else text

    def _prefix(self, tag: str, colour: bool) -> str:
        style = SERVER_STYLE if tag == "[SERVER]" else CLIENT_STYLE
        return self._paint(tag, style, colour)

    def line(self, text: str) -> None:
        """Print a line as it is (already printable)."""
        self.end_progress()
        print(text, file=self.out, flush=True)

    def server(self, text: str) -> None:
        """``[SERVER] text``."""
        self.line(f"{self._prefix('[SERVER]', self.colour)} {text}")

    def client(self, text: str) -> None:
        """``[CLIENT] text``."""
        self.line(f"{self._prefix('[CLIENT]', self.colour)} {text}")

    def server_error(self, text: str) -> None:
        """``[SERVER] text``, as an error (red, on the error stream)."""
        self._error("[SERVER]", text)

    def client_error(self, text: str) -> None:
        """``[CLIENT] text``, as an error (red, on the error stream)."""
        self._error("[CLIENT]", text)

    def _error(self, tag: str, text: str) -> None:
        self.end_progress()
        colour = self.error_colour
        line = f"{self._prefix(tag, colour)} {self._paint(text, ERROR_STYLE, colour)}"
        print(line, file=self.errors, flush=True)

    @contextlib.contextmanager
    def paged(self, pager: Pager | None) -> Iterator[None]:
        """What the block prints on ``out``, shown through ``pager`` once it ends
        (None: printed as it comes). Error lines go to their stream at once."""
        if pager is None:
            yield
            return
        shown, self.out = self.out, io.StringIO()
        try:
            yield
        except BaseException:
            text, self.out = self.out.getvalue(), shown
            shown.write(text)  # what there is, before the error says why it stops
            raise
        text, self.out = self.out.getvalue(), shown
        pager.show(text)

    # -- what the commands show -------------------------------------------------

    def greeting(self, name: str, server: str) -> None:
        self.client(f"Assigned name: {printable(name)}")
        self.server(f"WELCOME {printable(name)} | {printable(server)}")
        self.line(COMMANDS_LINE)

    def cannot_start(self, exc: FiledockError) -> None:
        """Why there is no session: the server is full, or what went wrong on connecting."""
        if isinstance(exc, ServerFull):
            self.server_error(capacity_line(printable(exc.reason)))
        else:
            self.client_error(printable(str(exc)))

    def request_error(self, exc: RequestError, subject: str | None = None) -> None:
        """``[SERVER] ERR <code> <text>``, naming ``subject`` (the file) when given;
        ``[CLIENT] <text>`` for a request the client itself refused to send."""
        about = "" if subject is None else f" ({printable(subject)})"
        if isinstance(exc, LineTooLong):
            self.client_error(f"{printable(exc.text)}{about}")
            return
        self.server_error(f"ERR {printable(exc.code)} {printable(exc.text)}{about}")

    def server_closed(self, exc: ServerClosing) -> None:
        """The server's ``ERR`` that ended the session, and what it means when it is not plain."""
        self.request_error(exc)
        if exc.code == p.ErrorCode.TIMEOUT:
            self.client_error("Disconnected by the server for being idle")

    def ping(self, seconds: float) -> None:
        """A plain ``ping``'s answer: the assignment's one line, and with ``-v`` its round trip."""
        self.server("PONG")
        if self.verbosity >= VERBOSE:
            self.client(f"round trip {_milliseconds(seconds)} ms")

    def pong(self, seconds: float) -> None:
        """One answer of ``ping -c N``, with its round trip: ``[SERVER] PONG 0.21 ms``."""
        self.server(f"PONG {_milliseconds(seconds)} ms")

    def ping_summary(self, round_trips: Sequence[float]) -> None:
        """The end of ``ping -c N``, as ping(8) ends: the fastest, mean and slowest round trip."""
        fastest, slowest = min(round_trips), max(round_trips)
        mean = sum(round_trips) / len(round_trips)
        shown = "/".join(_milliseconds(value) for value in (fastest, mean, slowest))
        pings = "ping" if len(round_trips) == 1 else "pings"
        self.client(f"{len(round_trips)} {pings}, round trip min/avg/max {shown} ms")

    def ack(self, text: str) -> None:
        self.server(f"{printable(text)} ACK")

    def who(self, names: Sequence[str]) -> None:
        self.server("WHO " + " ".join(map(printable, names)))

    def status(self, records: Sequence[p.ClientRecord]) -> None:
        self.server("--- STATUS ---")
        for line in status_lines(records):
            self.line(line)
        self.server("-----")

    def stats(self, figures: Mapping[str, int | float]) -> None:
        self.server("--- STATS ---")
        for line in stats_lines(figures):
            self.line(line)
        self.server("-----")

    def files(self, files: Sequence[p.FileInfo]) -> None:
        self.server("--- FILES ---")
        for line in file_lines(files):
            self.line(line)
        self.server("-----")

    def digest(self, digest: p.FileDigest) -> None:
        """``<sha256>  <path>``, as sha256sum prints it (so ``sha256sum -c`` checks a copy)."""
        self.line(f"{digest.sha256}  {printable(digest.path)}")

    def help(self, server_help: str, downloads: str) -> None:
        self.server(printable(server_help))
        self.line("In this client:")
        for line in help_lines(downloads):
            self.line(line)

    def download(self, result: DownloadResult) -> None:
        """What happened to one file: the assignment's two lines when it was saved
        (what more there is to say in brackets after PASS), one line otherwise."""
        if self.verbosity <= QUIET:
            return
        where = printable(os.path.abspath(result.path))
        if result.outcome is Outcome.SKIPPED:
            self.client(f"Skipped (up to date): {where}")
            return
        if result.outcome is Outcome.KEPT:
            self.client(f"Kept (--no-clobber; it differs from the server's): {where}")
            return
        self.client(f"Saved file to: {where}")
        verdict = self._paint("PASS", PASS_STYLE, self.colour)
        self.client(f"SHA256 verify: {verdict}{_note(result)}")

    def upload(self, result: UploadResult) -> None:
        """One line per file sent: stored (and from where a resume went on), or skipped."""
        if self.verbosity <= QUIET:
            return
        path = printable(result.path)
        if result.outcome is UploadOutcome.SKIPPED:
            self.client(f"Skipped {path} (the server has it)")
        elif result.outcome is UploadOutcome.RESUMED:
            size, offset = human_size(result.size), result.resumed_from
            self.client(f"Stored {path} ({size}, resumed from {offset} bytes)")
        else:
            self.client(f"Stored {path} ({human_size(result.size)}, SHA-256 checked)")

    def integrity_failure(self, exc: IntegrityError) -> None:
        self.end_progress()
        colour = self.error_colour
        verdict = self._paint("FAIL", FAIL_STYLE, colour)
        line = f"{self._prefix('[CLIENT]', colour)} SHA256 verify: {verdict}"
        print(line, file=self.errors, flush=True)
        self.client_error(f"{printable(str(exc))}: expected {exc.expected}, got {exc.actual}")

    def connection_lost(self, reason: str) -> None:
        self.client_error(f"Connection to the server was lost ({printable(reason)})")

    def folder_hint(self, path: str) -> None:
        shown = printable(path)
        listing = "list" if path.strip("./") == "" else f"list {shown}"  # `.`: all of it
        self.client_error(f"{shown} is a folder: `{listing}` or `get -r {shown}`")

    def no_match(self, pattern: str) -> None:
        self.client_error(f"No file on the server matches {printable(pattern)}")

    def interrupted(self, command: str | None) -> None:
        """Ctrl-C stopped a command; ``command`` is the line that resumes it (a download)."""
        if not self.end_progress():
            self.line("")  # the terminal echoed ^C where the cursor was: start a line
        if command is None:
            self.client("interrupted")
        else:
            self.client(f"interrupted; `{printable(command)}` again resumes")

    def reconnected(self, name: str) -> None:
        self.client(f"Reconnected as {printable(name)}")

    def change(self, change: Change, *, dry_run: bool) -> None:
        """One line of a mirror: what is (or would be) done to which local file."""
        action = f"would {change.action}" if dry_run else change.action
        detail = ""
        if change.action in ("fetch", "resume", "replace"):
            detail = f" ({human_size(change.size)})"
        elif change.action == "keep":
            detail = " (it differs from the server's; kept)"
        line = f"{action} {printable(str(change.local))}{detail}"
        if change.error is not None:
            self._error("[CLIENT]", f"{line}: {printable(str(change.error))}")
        elif self.verbosity > QUIET:
            self.line(line)

    def mirror_summary(self, summary: TreeSummary, seconds: float, *, dry_run: bool) -> None:
        if self.verbosity <= QUIET:
            return
        if dry_run:
            self._dry_run_summary(summary)
            return
        counts = (
            f"fetched {summary.fetched}, skipped {summary.skipped}, "
            f"replaced {summary.replaced}, deleted {summary.deleted}, failed {summary.failed}"
        )
        if summary.kept:
            counts += f", kept {summary.kept}"
        self.client(f"{counts}; {human_size(summary.bytes)} in {clock(seconds)}")

    def transfer_summary(self, done: Counter[str], failed: int, moved: int, seconds: float) -> None:
        """The line after a ``get`` or ``put`` of several files (or any, with ``-v``):
        ``[CLIENT] 3 files: 2 fetched, 1 failed; 2.1 MiB in 0:01 (1.8 MiB/s)``."""
        if self.verbosity <= QUIET:
            return
        files = sum(done.values()) + failed
        counts = [f"{count} {outcome}" for outcome, count in done.items() if count]
        counts += [f"{failed} failed"] if failed else []
        rate = f" ({human_size(moved / seconds)}/s)" if seconds > 0 and moved else ""
        noun = "file" if files == 1 else "files"
        self.client(
            f"{files} {noun}: {', '.join(counts)}; {human_size(moved)} in {clock(seconds)}{rate}"
        )

    def _dry_run_summary(self, summary: TreeSummary) -> None:
        """What a mirror would do, counted from its changes (nothing moved to count)."""
        count = Counter(change.action for change in summary.changes)
        moving = sum(c.size for c in summary.changes if c.action in ("fetch", "resume", "replace"))
        self.client(
            f"would fetch {count['fetch'] + count['resume']}, replace {count['replace']}, "
            f"delete {count['delete']}, fail {count['fail']}; "
            f"up to {human_size(moving)} to fetch (dry run: nothing was changed)"
        )

    # -- progress ---------------------------------------------------------------

    def transfer_bar(self, label: str | None = None) -> TransferBar | None:
        """A progress callback for one call that moves files; None when not on a terminal.

        ``label`` names a single file (default: the path being received). The
        bar's line is ended before anything else this screen prints.
        """
        stream = self.progress
        if stream is None or not stream.isatty() or self.verbosity <= QUIET:
            return None
        self.end_progress()
        self._bar = TransferBar(ProgressLine(stream, None if label is None else printable(label)))
        return self._bar

    def end_progress(self) -> bool:
        """End the progress line, if one is drawn, so the next output starts a line;
        whether there was one."""
        return self._bar is not None and self._bar.end()


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _note(result: DownloadResult) -> str:
    """What a saved file's verdict adds: how it was had, when not simply fetched."""
    if result.restarted is not None:
        return f" (started over: {printable(result.restarted)})"
    if result.outcome is Outcome.RESUMED:
        return f" (resumed from {result.resumed_from} bytes)"
    if result.outcome is Outcome.REPLACED:
        return " (replaced a different local file)"
    return ""


class TransferBar:
    """The progress callback of one call: draws only when over PROGRESS_THRESHOLD of bodies
    that arrive in parts; :meth:`finish` says the total time.

    Its clock starts when it is made (when the files are asked for).
    """

    def __init__(self, line: ProgressLine) -> None:
        self._line = line
        self._calls = 0

    def __call__(self, report: TransferProgress) -> None:
        self._calls += 1
        finished = report.bytes_done >= report.bytes_total
        if report.bytes_total <= PROGRESS_THRESHOLD or (finished and self._calls == 1):
            return  # small, or all here at once: nothing to watch
        self._line.update(report)

    def end(self) -> bool:
        return self._line.end()

    def finish(self) -> None:
        self._line.finish()


_AT_CAPACITY = "Server is at capacity"


def capacity_line(reason: str) -> str:
    """The line for a FULL answer: its reason said once, even when it begins
    with the very words of the line (``server is at capacity (3/3 clients)``)."""
    if reason.lower().startswith(_AT_CAPACITY.lower()):
        rest = reason[len(_AT_CAPACITY) :]
        return _AT_CAPACITY + (rest if rest.startswith((" ", ":")) or not rest else f": {reason}")
    return f"{_AT_CAPACITY}: {reason}" if reason else _AT_CAPACITY
