"""One command, then exit: ``filedock-client [options] COMMAND …``, for scripts.

Each command prints what the prompt would print (:mod:`filedock.screen`),
errors on stderr, and exits with a status from :mod:`filedock.exitcodes`.
``list``, ``status``, ``stats`` and ``who`` take ``--json`` and then print one
JSON document instead (the schema is in the README and in :func:`file_json`,
:func:`client_json`). ``get`` fetches every file it is given over one
connection, pipelined, ``mirror`` makes a local folder match the
server's (:mod:`.transfers`), and ``put`` sends local files (:mod:`.uploads`);
all take ``--json`` too, one object a line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timezone
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, TextIO

from .. import protocol as p
from ..client.client import Client
from ..errors import (
    ConnectionLost,
    FiledockError,
    ProtocolError,
    RequestError,
    ServerClosing,
)
from .exitcodes import ExitCode, exit_code_for, worst
from .pings import run_pings
from .screen import Screen, printable
from .times import iso_time, server_zone
from .transfer_options import GetRequest, MirrorRequest, PutRequest

if TYPE_CHECKING:  # the options module runs this one
    from .client import ClientOptions
    from .pager import Pager

# The transfers' modules (and, through them, the client's download and upload
# code) and the pager's (subprocess) are imported where a command uses them:
# a one-shot ``list`` or ``ping`` starts without them.

Handler = Callable[[Client, "ClientOptions", Screen], int]


def file_json(info: p.FileInfo) -> dict[str, Any]:
    """``{"path": str, "size": int, "mtime": "2026-11-24T15:29:28Z"}`` (mtime in UTC)."""
    return {"path": info.path, "size": info.size, "mtime": p.format_file_time(info.mtime)}


# One element of the list --json prints, as json.dump(..., indent=2) writes file_json's.
_FILE_JSON = '  {{\n    "path": {},\n    "size": {},\n    "mtime": "{}"\n  }}'
# Elements written at a time: the output goes out as it is made, in few writes.
_JSON_BATCH = 1000


def write_files_json(out: TextIO, files: Sequence[p.FileInfo]) -> None:
    """What ``json.dump([file_json(info) for info in files], out, indent=2)`` and a
    line feed write, character for character, without building the document:
    100,000 files are some 10 MB of JSON."""
    if not files:
        out.write("[]\n")
        return
    out.write("[\n")
    element, path_json, time_text = _FILE_JSON.format, encode_basestring_ascii, p.format_file_time
    for start in range(0, len(files), _JSON_BATCH):
        batch = files[start : start + _JSON_BATCH]
        text = ",\n".join([element(path_json(f.path), f.size, time_text(f.mtime)) for f in batch])
        out.write(text if start == 0 else ",\n" + text)
    out.write("\n]\n")


def client_json(record: p.ClientRecord, zone: timezone | None = None) -> dict[str, Any]:
    """``{"name", "accepted", "finished", "address"}``; times in ISO 8601 with the
    server's UTC offset ``zone`` (``2026-11-24T15:29:28+01:00``; None: this
    machine's), ``finished`` null while the client is connected."""
    return {
        "name": record.name,
        "accepted": iso_time(record.accepted, zone),
        "finished": None if record.finished is None else iso_time(record.finished, zone),
        "address": record.address,
    }


def run_oneshot(
    options: ClientOptions,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Connect, run ``options.command``, leave; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    screen = Screen(out, errors=err, progress=err, verbosity=options.verbosity)
    try:
        try:
            client = options.connect()
        except FiledockError as exc:
            screen.cannot_start(exc)
            return exit_code_for(exc)
        with client:
            return _run(client, options, screen)
    except KeyboardInterrupt:
        if not screen.end_progress() and err.isatty():
            err.write("\n")  # the terminal echoed ^C where the cursor was: start a line
        if options.transfer is not None:  # the partial file is kept
            screen.client_error("interrupted; the same command again resumes")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`filedock-client list | head -1`): say nothing more.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return ExitCode.ERROR


def _run(client: Client, options: ClientOptions, screen: Screen) -> int:
    assert options.command is not None  # run_client runs the prompt otherwise
    if options.command in CLIENT_COMMANDS:
        handler = CLIENT_COMMANDS[options.command]
    else:
        handler = _HANDLERS[p.COMMANDS_BY_WORD[options.command].request]
    try:
        return handler(client, options, screen)
    except ServerClosing as exc:
        screen.server_closed(exc)
        return ExitCode.CONNECTION
    except ConnectionLost as exc:
        screen.connection_lost(str(exc))
        return ExitCode.CONNECTION
    except RequestError as exc:
        screen.request_error(exc)
        return exit_code_for(exc)
    except ProtocolError as exc:
        screen.client_error(f"The server broke the protocol: {printable(str(exc))}")
        return ExitCode.CONNECTION if client.closed else ExitCode.ERROR
    except FiledockError as exc:  # a mirror's folder that cannot be made, …
        from .transfers import show_failure

        show_failure(screen, exc, "")
        return exit_code_for(exc)


def _print_json(screen: Screen, document: object) -> None:
    json.dump(document, screen.out, indent=2)
    screen.out.write("\n")
    screen.out.flush()


def _ping(client: Client, options: ClientOptions, screen: Screen) -> int:
    if options.ping_count is not None:
        run_pings(client, options.ping_count, screen)
        return ExitCode.OK
    screen.ping(client.ping())
    return ExitCode.OK


def _pager(options: ClientOptions, screen: Screen) -> Pager | None:
    """The pager for a table that may be long: on a terminal only, and not with --no-pager."""
    if not options.pager:
        return None
    from .pager import Pager

    return Pager.for_stream(screen.out)


def _list(client: Client, options: ClientOptions, screen: Screen) -> int:
    files = client.list(options.arguments[0] if options.arguments else None)
    if options.json:
        write_files_json(screen.out, files)
        screen.out.flush()
    else:
        with screen.paged(_pager(options, screen)):
            screen.files(files)
    return ExitCode.OK


def _status(client: Client, options: ClientOptions, screen: Screen) -> int:
    records = client.status()
    if options.json:
        zone = server_zone(records, client.name, client.welcomed_at)
        _print_json(screen, [client_json(record, zone) for record in records])
    else:
        with screen.paged(_pager(options, screen)):
            screen.status(records)
    return ExitCode.OK


def _stats(client: Client, options: ClientOptions, screen: Screen) -> int:
    figures = client.stats()
    if options.json:
        _print_json(screen, figures)  # {"name": value, ...}, in the server's order
    else:
        screen.stats(figures)
    return ExitCode.OK


def _who(client: Client, options: ClientOptions, screen: Screen) -> int:
    names = client.who()
    if options.json:
        _print_json(screen, names)
    else:
        screen.who(names)
    return ExitCode.OK


def _uptime(client: Client, options: ClientOptions, screen: Screen) -> int:
    screen.server(f"UPTIME {client.uptime()}s")
    return ExitCode.OK


def _about(client: Client, options: ClientOptions, screen: Screen) -> int:
    screen.server(f"ABOUT {printable(client.about())}")
    return ExitCode.OK


def _help(client: Client, options: ClientOptions, screen: Screen) -> int:
    screen.server(printable(client.help()))
    return ExitCode.OK


def _say(client: Client, options: ClientOptions, screen: Screen) -> int:
    screen.ack(client.say(" ".join(options.arguments)))
    return ExitCode.OK


def _get(client: Client, options: ClientOptions, screen: Screen) -> int:
    from .transfers import run_get

    assert isinstance(options.transfer, GetRequest)  # read_options makes one for get
    return run_get(client, options.transfer, screen, options.downloads)


def _mirror(client: Client, options: ClientOptions, screen: Screen) -> int:
    from .transfers import run_mirror

    assert isinstance(options.transfer, MirrorRequest)  # read_options makes one for mirror
    return run_mirror(client, options.transfer, screen)


def _put(client: Client, options: ClientOptions, screen: Screen) -> int:
    from .uploads import run_put

    assert isinstance(options.transfer, PutRequest)  # read_options makes one for put
    return run_put(client, options.transfer, screen)


def _hash(client: Client, options: ClientOptions, screen: Screen) -> int:
    """One ``<sha256>  <path>`` line per file, as sha256sum prints them; a file
    refused is said on stderr, and the others still printed."""
    codes: list[ExitCode] = []
    for path in options.arguments:
        try:
            screen.digest(client.hash(path))
        except ServerClosing:
            raise
        except RequestError as exc:
            screen.request_error(exc, path)
            codes.append(exit_code_for(exc))
    return worst(codes)


# The verbs ``filedock-client COMMAND`` offers, from the protocol's command table.
ONESHOT_COMMANDS = tuple(command for command in p.COMMANDS if command.oneshot)

# One handler per verb of ONESHOT_COMMANDS (a test checks they match).
_HANDLERS: dict[type[p.CommandRequest], Handler] = {
    p.Ping: _ping,
    p.ListFiles: _list,
    p.Status: _status,
    p.Stats: _stats,
    p.Who: _who,
    p.Uptime: _uptime,
    p.About: _about,
    p.Help: _help,
    p.Say: _say,
    p.Get: _get,
    p.Hash: _hash,
}

# The commands made of several requests, which the protocol has no verb for.
CLIENT_COMMANDS: dict[str, Handler] = {"mirror": _mirror, "put": _put}
