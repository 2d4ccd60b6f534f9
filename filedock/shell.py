"""The interactive client: the prompt, and what a person sees.

Built on :class:`filedock.Client` alone. The screen text follows the original
assignment's walk-through (see the README).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from . import protocol as p
from .client import Client, DownloadResult
from .errors import (
    ConnectionLost,
    IntegrityError,
    ProtocolError,
    RequestError,
    SaveError,
    ServerClosing,
)
from .exitcodes import ExitCode
from .progress import ProgressBar

COMMANDS_LINE = (
    "Commands: help | list | status | who | ping | uptime | get <file> | <filename> | about | exit"
)

# Bodies larger than this get a progress bar (on a terminal only).
PROGRESS_THRESHOLD = 1024 * 1024

_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F) if code != 0x09}


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes: a server cannot drive the terminal."""
    return text.translate(_CONTROL)


class Shell:
    """A prompt loop over one connected :class:`Client`."""

    def __init__(
        self,
        client: Client,
        downloads: str | os.PathLike[str] = "downloads",
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.client = client
        self.downloads = Path(downloads)
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def run(self) -> int:
        """Greet, then read commands until ``exit``, end of input or Ctrl-C; the exit status."""
        name = self.client.name
        self.say(f"[CLIENT] Assigned name: {printable(name)}")
        self.say(f"[SERVER] WELCOME {printable(name)} | {printable(self.client.server)}")
        self.say(COMMANDS_LINE)
        prompt = f"{printable(name)} > "
        while True:
            try:
                text = input(prompt).strip()
            except (EOFError, KeyboardInterrupt):
                self.say("")
                return self._leave()
            if not text:
                continue
            try:
                if self.execute(text):
                    return ExitCode.OK
            except KeyboardInterrupt:
                self.say("")
                return self._leave()
            except ServerClosing as exc:
                self.say(f"[SERVER] ERR {exc.code} {printable(exc.text)}")
                return ExitCode.CONNECTION
            except ConnectionLost as exc:
                self.say(f"[CLIENT] Connection to the server was lost ({printable(str(exc))})")
                return ExitCode.CONNECTION
            except ProtocolError as exc:
                self.say(f"[CLIENT] The server broke the protocol: {printable(str(exc))}")
                if self.client.closed:
                    return ExitCode.CONNECTION

    def _leave(self) -> int:
        if self.client.exit():
            self.say("[SERVER] BYE")
        return ExitCode.OK

    def execute(self, text: str) -> bool:
        """Run one command line; ``True`` when the session is over."""
        try:
            request = p.parse_request(text)
        except RequestError as exc:
            self.say(f"[CLIENT] {exc.text}")
            return False
        client = self.client
        try:
            match request:
                case p.Ping():
                    client.ping()
                    self.say("[SERVER] PONG")
                case p.Who():
                    self.say("[SERVER] WHO " + " ".join(map(printable, client.who())))
                case p.Uptime():
                    self.say(f"[SERVER] UPTIME {client.uptime()}s")
                case p.About():
                    self.say(f"[SERVER] ABOUT {printable(client.about())}")
                case p.Help():
                    self.say(f"[SERVER] {printable(client.help())}")
                case p.Status():
                    self._show_status(client.status())
                case p.ListFiles():
                    self._show_files(client.list())
                case p.Get(path):
                    self._show_download(
                        client.download(path, self.downloads, progress=self._bar(path))
                    )
                case p.Say(message):
                    self.say(f"[SERVER] {printable(client.say(message))} ACK")
                case p.Exit():
                    if client.exit():
                        self.say("[SERVER] BYE")
                    return True
                case p.Message(message):
                    result = client.send_line(message, self.downloads, progress=self._bar(message))
                    if isinstance(result, DownloadResult):
                        self._show_download(result)
                    else:
                        self.say(f"[SERVER] {printable(result)} ACK")
        except IntegrityError as exc:
            self.say("[CLIENT] SHA256 verify: FAIL")
            self.say(f"[CLIENT] {printable(str(exc))}: expected {exc.expected}, got {exc.actual}")
        except SaveError as exc:
            self.say(f"[CLIENT] Could not save the file: {printable(str(exc))}")
        except ServerClosing:
            raise
        except RequestError as exc:
            self.say(f"[SERVER] ERR {exc.code} {printable(exc.text)}")
        return False

    # -- rendering --------------------------------------------------------------

    def _show_download(self, result: DownloadResult) -> None:
        self.say(f"[CLIENT] Saved file to: {printable(os.path.abspath(result.path))}")
        self.say("[CLIENT] SHA256 verify: PASS")

    def _show_status(self, records: list[p.ClientRecord]) -> None:
        width = max([8, *(len(record.name) for record in records)]) + 2
        self.say("[SERVER] --- STATUS ---")
        self.say(f"{'CLIENT':<{width}}{'ACCEPTED':<21}{'FINISHED':<21}ADDR")
        for record in records:
            accepted = p.format_status_time(record.accepted)
            finished = "None" if record.finished is None else p.format_status_time(record.finished)
            self.say(
                f"{printable(record.name):<{width}}{accepted:<21}{finished:<21}"
                f"{printable(record.address)}"
            )
        self.say("[SERVER] -----")

    def _show_files(self, files: list[p.FileInfo]) -> None:
        self.say("[SERVER] --- FILES ---")
        for info in files:
            self.say(printable(info.path))
        self.say("[SERVER] -----")

    def _bar(self, label: str) -> _LazyBar | None:
        return _LazyBar(self.err, printable(label)) if self.err.isatty() else None


class _LazyBar:
    """A progress bar drawn only for bodies over PROGRESS_THRESHOLD."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._bar: ProgressBar | None = None

    def __call__(self, done: int, total: int) -> None:
        if total <= PROGRESS_THRESHOLD:
            return
        if self._bar is None:
            self._bar = ProgressBar(self._stream, self._label)
        self._bar(done, total)
        if done >= total:
            self._bar.close()
