"""The filedock wire protocol, version 1, with no I/O (sans-IO).

Bytes go in and come out as events; values go in and come out as bytes. The
server and the client library are thin drivers around this module, and it is
the only place that spells a protocol word. See PROTOCOL.md for the contract.

Requests (client → server) and replies (server → client) are small frozen
dataclasses; :mod:`.framing` splits the byte stream into lines. :data:`COMMANDS`
declares every verb once; the parser, the server's ``HELP`` and dispatch, the
shell and the one-shot commands are made from it. :class:`ErrorCode` spells
every ``ERR`` code once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import assert_never, cast

from .. import errors
from .framing import LINE_PADDING, MAX_RECORDS, decode_line
from .listing import FILES_TIME_FORMAT as FILES_TIME_FORMAT
from .listing import FileRecord as FileRecord
from .listing import encode_file_records as encode_file_records
from .listing import format_file_seconds as format_file_seconds
from .listing import format_file_time as format_file_time
from .listing import parse_file_time as parse_file_time

PROTOCOL_VERSION = 1
# The highest version this side speaks; a client asks for it with PROTO_PREFIX
# in its greeting (``HELLO Client01 proto=2``) and the WELCOME confirms it.
HIGHEST_PROTOCOL = 2
PROTO_PREFIX = "proto="

STATUS_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
NOT_FINISHED = "-"
# A STATUS record's address that the server does not show to this client
# (filedock-server --status-addresses).
HIDDEN_ADDRESS = "-"
# In a v2 FILE header, in place of the SHA-256: it follows the body (DIGEST).
UNKNOWN_DIGEST = "-"
FIELD_SEPARATOR = "\t"
# The FULL text of a new connection when the shared registry of several servers
# cannot be reached (``FULL registry unavailable <text>``): no slot it did not grant.
REGISTRY_UNAVAILABLE_REASON = "registry unavailable (try again shortly)"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# An error code is one lowercase word (hyphens inside): anything else in that
# place is no reply of this protocol, and is never shown as a code.
_ERROR_CODE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_LONGEST_ERROR_CODE = 40


# The word of a greeting that carries the client's access token: ``token=<token>``.
TOKEN_PREFIX = "token="


def client_name(number: int) -> str:
    """The name of the ``number``-th admitted client: Client01, …, Client99, Client100."""
    return f"Client{number:02d}"


# --------------------------------------------------------------------------
# Requests (client → server)


@dataclass(frozen=True, slots=True)
class Hello:
    """The greeting; words after ``HELLO`` (the name, a version) are ignored,
    but ``token=…`` and ``proto=…``."""

    words: str = ""

    @property
    def protocol(self) -> int:
        """The version this greeting is answered in: 2 when it asks for 2 or
        more (``proto=N``), else 1."""
        for word in self.words.split(" "):
            if word.startswith(PROTO_PREFIX):
                asked = word[len(PROTO_PREFIX) :]
                if asked.isascii() and asked.isdigit() and int(asked) >= 2:
                    return HIGHEST_PROTOCOL
        return 1


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Who:
    pass


@dataclass(frozen=True, slots=True)
class Uptime:
    pass


@dataclass(frozen=True, slots=True)
class About:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Stats:
    """``STATS``: the server's counters and gauges, one record each (v2)."""


@dataclass(frozen=True, slots=True)
class ListFiles:
    """``LIST``, or ``LIST <folder>``: only the files under that folder."""

    folder: str | None = None


@dataclass(frozen=True, slots=True)
class Exit:
    pass


@dataclass(frozen=True, slots=True)
class Get:
    path: str


@dataclass(frozen=True, slots=True)
class Hash:
    path: str


@dataclass(frozen=True, slots=True)
class Range:
    """``RANGE <offset> <sha256> <path>``: the file from ``offset`` on, if its
    digest is still ``sha256``."""

    offset: int
    sha256: str
    path: str

    @classmethod
    def parse(cls, argument: str) -> Range:
        parts = argument.split(" ", 2)
        if len(parts) != 3 or not parts[2]:
            raise errors.BadRequest(_RANGE_MISSING)
        offset, sha256, path = parts
        return cls(
            _argument_bytes(offset, "RANGE needs an offset"),
            _argument_sha256(sha256, "RANGE"),
            path,
        )

    def argument(self) -> str:
        return f"{self.offset} {self.sha256} {self.path}"


def _argument_bytes(text: str, needs: str) -> int:
    """A request's count of bytes: digits only, as _parse_size."""
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise errors.BadRequest(f"{needs} in bytes, not {_shorten(text)!r}")
    return int(text)


def _argument_sha256(text: str, verb: str) -> str:
    sha256 = text.lower()
    if not _SHA256_HEX.fullmatch(sha256):
        raise errors.BadRequest(f"{verb} needs a SHA-256 of 64 hex digits")
    return sha256


_RANGE_MISSING = "RANGE needs an offset, a SHA-256 and a path: RANGE <offset> <sha256> <path>"


class PutMode(StrEnum):
    """What a ``PUT`` does with a path that exists: ``new`` refuses it,
    ``replace`` replaces it."""

    NEW = "new"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class Put:
    """``PUT <size> <sha256> <mode> <path>``: an upload of ``size`` bytes whose
    SHA-256 is ``sha256``; after ``READY <offset>`` the client sends exactly
    ``size - offset`` raw bytes."""

    size: int
    sha256: str
    mode: PutMode
    path: str

    @classmethod
    def parse(cls, argument: str) -> Put:
        parts = argument.split(" ", 3)
        if len(parts) != 4 or not parts[3]:
            raise errors.BadRequest(_PUT_MISSING)
        size, sha256, mode, path = parts
        count = _argument_bytes(size, "PUT needs a size")
        digest = _argument_sha256(sha256, "PUT")
        try:
            put_mode = PutMode(mode.lower())
        except ValueError:
            raise errors.BadRequest(
                f"PUT needs a mode, new or replace, not {_shorten(mode)!r}"
            ) from None
        return cls(count, digest, put_mode, path)

    def argument(self) -> str:
        return f"{self.size} {self.sha256} {self.mode} {self.path}"


_PUT_MISSING = (
    "PUT needs a size, a SHA-256, a mode and a path: PUT <size> <sha256> <new|replace> <path>"
)


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Message:
    """A line that is no command: echoed with ACK, or a GET if it names a file."""

    text: str


# Every request a greeted client may make: one per entry of COMMANDS.
CommandRequest = (
    Ping
    | Who
    | Uptime
    | About
    | Help
    | Status
    | Stats
    | ListFiles
    | Exit
    | Get
    | Hash
    | Range
    | Put
    | Say
    | Message
)
Request = Hello | CommandRequest


@dataclass(frozen=True, slots=True)
class Command:
    """One verb of the protocol, declared once in :data:`COMMANDS`.

    ``word`` is how it is typed (any case; upper case on the wire); None for
    :class:`Message`, what a line that starts with no command word is.
    ``argument`` names what follows the word (``"file"`` shows as
    ``get <file>``; several words are several fields, ``<offset> <sha256>
    <path>``); a verb with an argument refuses a line without one with
    ``BadRequest(missing)``, unless it is ``optional`` (``list [folder]``).
    Its request class has that one field, or, with ``parse``, is made by
    ``parse`` from the text after the word (and gives it back with its
    ``argument()``). ``argument_help`` says more about it in the one-shot
    ``--help``. ``since`` is the protocol version that added the verb: a v1
    greeting's ``HELP`` names only v1's verbs, as v1 did (and an optional
    argument, which v1 had not, is left out there).
    ``help`` is what it does, for people; ``shell_help`` replaces it on the
    prompt's help screen, where the prompt does more. ``shell`` and
    ``oneshot`` say whether the prompt and ``filedock-client COMMAND`` offer
    it, ``shell_aliases`` are more words the prompt takes for it,
    ``shell_greeting`` whether the line under the prompt's greeting names it,
    and ``json`` gives its one-shot command a ``--json`` option.
    """

    word: str | None
    request: type[CommandRequest]
    help: str
    argument: str | None = None
    argument_help: str | None = None
    missing: str = ""
    shell_help: str | None = None
    shell: bool = True
    oneshot: bool = True
    shell_aliases: tuple[str, ...] = ()
    shell_greeting: bool = True
    json: bool = False
    optional: bool = False
    parse: Callable[[str], CommandRequest] | None = None
    since: int = 1

    @property
    def usage(self) -> str:
        """``ping``, ``get <file>``, ``list [folder]``, or ``<filename>`` for a message."""
        if self.argument is None:
            return self.word or ""
        if self.optional:
            placeholder = f"[{self.argument}]"
        else:
            placeholder = " ".join(f"<{name}>" for name in self.argument.split())
        return f"{self.word} {placeholder}" if self.word else placeholder

    @property
    def short_usage(self) -> str:
        """:attr:`usage` without an optional argument: ``list``."""
        return self.word or "" if self.optional else self.usage

    def encode(self, request: CommandRequest) -> str:
        """The line (without LF) that makes ``request``."""
        word = (self.word or "").upper()
        if self.argument is None:
            return word
        argument = (
            cast(Range | Put, request).argument()
            if self.parse is not None
            else _only_field(request)
        )
        if argument is None:  # an optional argument left out
            return word
        return f"{word} {argument}" if word else argument


def _only_field(request: CommandRequest) -> str | None:
    value: str | None = getattr(request, fields(request)[0].name)
    return value


# A verb's argument, if it has one, is its request's one field. (Named once:
# subscripting Callable at each call would cost more than the parse.)
_Constructor = Callable[..., CommandRequest]


def _new(cls: type[CommandRequest], *argument: str) -> CommandRequest:
    """A request of ``cls``, made with the verb's argument if it has one."""
    return cast(_Constructor, cls)(*argument)


# Each verb, once, in the order of the server's HELP line. To add a verb: its
# request class above (and in CommandRequest), one entry here, its handler in
# server/commands.py's HANDLERS; then, if the prompt offers it, a case in
# cli/shell.py's Shell.execute, and if the one-shot CLI does, a handler in
# cli/oneshot.py's _HANDLERS. Tests check that every one of those covers this table.
COMMANDS: tuple[Command, ...] = (
    Command(
        "help",
        Help,
        "the server's list of commands",
        shell_help="this list (and the server's own)",
    ),
    Command(
        "status",
        Status,
        "every client since the server started",
        shell_help="every client since the server started: when it came, when it left",
        json=True,
    ),
    Command(
        "list",
        ListFiles,
        "the files on the server (or in one folder): path, size, last modified",
        argument="folder",
        optional=True,
        argument_help="only the files under this folder (paths still from the top)",
        json=True,
    ),
    Command(
        "get",
        Get,
        "download files (several at once over one connection), verified by SHA-256",
        argument="file",
        missing="GET needs a path: GET <path>",
        argument_help="a path as `list` shows it",
        shell_help="download a file into {downloads}, verified by SHA-256",
        json=True,
    ),
    Command(
        "hash",
        Hash,
        "the SHA-256 of files on the server, printed as sha256sum does",
        argument="path",
        missing="HASH needs a path: HASH <path>",
        argument_help="a path as `list` shows it",
        shell_greeting=False,
        since=2,
    ),
    Command(
        "range",
        Range,
        "the rest of a file from an offset, if its SHA-256 is still the one given",
        argument="offset sha256 path",
        missing=_RANGE_MISSING,
        parse=Range.parse,
        shell=False,
        oneshot=False,
        since=2,
    ),
    Command(
        "put",
        Put,
        "upload a file, verified by SHA-256, when the server allows uploads",
        argument="size sha256 mode path",
        missing=_PUT_MISSING,
        parse=Put.parse,
        shell=False,
        oneshot=False,
        since=2,
    ),
    Command(
        "stats",
        Stats,
        "the server's counters: connections, requests, bytes, transfers, refusals",
        shell_greeting=False,
        json=True,
        since=2,
    ),
    Command(
        None,
        Message,
        "a message: the server echoes it with ACK, or sends the file it names",
        argument="filename",
        shell_help="a message: the server echoes it with ACK",
        oneshot=False,
    ),
    Command(
        "say",
        Say,
        "send a message; the server echoes it",
        argument="text",
        missing="SAY needs a text: SAY <text>",
        shell_help="send <text> as a message, even if it is a command word",
        shell_greeting=False,
    ),
    Command("ping", Ping, "check that the server answers"),
    Command("who", Who, "the clients connected now", json=True),
    Command(
        "uptime",
        Uptime,
        "seconds since the server started",
        shell_help="how long the server has been running",
    ),
    Command("about", About, "the server's name and version"),
    Command(
        "exit",
        Exit,
        "leave; Ctrl-D (end of input) leaves too",
        oneshot=False,
        shell_aliases=("quit",),
    ),
)

COMMANDS_BY_WORD: dict[str, Command] = {c.word: c for c in COMMANDS if c.word is not None}
COMMANDS_BY_REQUEST: dict[type[CommandRequest], Command] = {c.request: c for c in COMMANDS}
COMMAND_WORDS = tuple(COMMANDS_BY_WORD)

# The server's answer to HELP (its wording is quoted in the docs and tests);
# a v1 greeting is answered as v1 was, naming only v1's verbs.
HELP_TEXT = "CMDs: " + " | ".join(c.usage for c in COMMANDS)
HELP_TEXT_V1 = "CMDs: " + " | ".join(c.short_usage for c in COMMANDS if c.since == 1)

# The usual spellings of the verbs without an argument, as raw lines: one
# dictionary lookup answers them without decoding (PING is most of a
# pipelined load).
_LINE_REQUESTS: dict[bytes, CommandRequest] = {
    spelling.encode(): _new(command.request)
    for word, command in COMMANDS_BY_WORD.items()
    if command.argument is None or command.optional
    for spelling in (word, word.upper())
}


def parse_request(text: str) -> CommandRequest:
    """The request a greeted client's line (already decoded and stripped) makes.

    Raises :class:`BadRequest` for a verb that needs an argument and has none.
    """
    verb, space, rest = text.partition(" ")
    command = COMMANDS_BY_WORD.get(verb.lower())
    if command is None:  # a message has no word: it is what a line without one is
        return Message(text)
    if command.argument is None:
        return Message(text) if space else _new(command.request)  # "ping me" is a message
    if not rest:
        if command.optional:
            return _new(command.request)
        raise errors.BadRequest(command.missing)
    if command.parse is not None:
        return command.parse(rest)
    # Called here, not through _new: this is the path of every GET.
    return command.request(rest)  # type: ignore[call-arg, arg-type]


def parse_request_line(line: bytes) -> CommandRequest | None:
    """The request a greeted client's line (without its LF or CR) makes; ``None``
    for a blank line. The same as :func:`parse_request` of :func:`decode_line`.

    Raises :class:`BadEncoding` or :class:`BadRequest`.
    """
    request = _LINE_REQUESTS.get(line)
    if request is None:
        text = decode_line(line)
        request = parse_request(text) if text else None
    return request


def parse_greeting(text: str) -> Hello | Exit | None:
    """What a line sent before the handshake is: the greeting, EXIT, or neither."""
    verb, _, rest = text.partition(" ")
    verb = verb.lower()
    if verb == "hello":
        return Hello(rest.strip(LINE_PADDING))
    if verb == _EXIT_WORD and not rest:
        return Exit()
    return None


# The one verb a client may use before the greeting (to leave).
_EXIT_WORD = COMMANDS_BY_REQUEST[Exit].word


def encode_request(request: Request) -> bytes:
    """The line a client sends for ``request``."""
    match request:
        case Hello(words):
            line = f"HELLO {words}" if words else "HELLO"
        case (
            Ping()
            | Who()
            | Uptime()
            | About()
            | Help()
            | Status()
            | Stats()
            | ListFiles()
            | Exit()
            | Get()
            | Hash()
            | Range()
            | Put()
            | Say()
            | Message()
        ):
            line = COMMANDS_BY_REQUEST[type(request)].encode(request)
        case _:
            assert_never(request)
    return _encode_line(line)


# --------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """One client in ``STATUS``: times are the server's local time, to the second.

    ``finished`` is None while the client is connected; ``address`` is
    ``host:port`` as the server saw it, or :data:`HIDDEN_ADDRESS` where the
    server does not show it (by default it shows a client its own only).
    ``node`` is the server that holds or held it when several serve as one
    (the record's fifth field), ``None`` for a server alone (four fields).

    >>> record = client.status()[0]
    >>> record.name, record.connected, record.address.startswith("127.0.0.1:")
    ('Client01', True, True)
    """

    name: str
    accepted: datetime
    finished: datetime | None
    address: str
    node: str | None = None

    @property
    def connected(self) -> bool:
        return self.finished is None


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One file in ``FILES``: ``path`` relative to the repository, ``mtime`` in UTC.

    >>> info = client.list()[0]
    >>> info.path, info.size, info.mtime.tzinfo
    ('sample.txt', 6, datetime.timezone.utc)
    """

    path: str
    size: int
    mtime: datetime


@dataclass(frozen=True, slots=True)
class FileDigest:
    """One file's metadata and SHA-256, as ``HASH`` answers: :class:`FileInfo`
    and its digest.

    >>> digest = client.hash("sample.txt")
    >>> digest.path, digest.size, digest.sha256[:12]
    ('sample.txt', 6, '5891b5b522d5')
    """

    path: str
    size: int
    mtime: datetime
    sha256: str


@dataclass(frozen=True, slots=True)
class StatRecord:
    """One figure in ``STATS``: ``name`` (lowercase, ``_`` between words) and
    its value now, a whole number or a decimal.

    >>> figures = client.stats()  # the records of one STATS, by name
    >>> figures["bytes_sent"], type(figures["uptime_seconds"])
    (0, <class 'float'>)
    """

    name: str
    value: int | float


_STAT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_STAT_INTEGER = re.compile(r"[0-9]{1,20}")
_STAT_DECIMAL = re.compile(r"[0-9]{1,20}\.[0-9]{1,9}")


def encode_stat_record(record: StatRecord) -> bytes:
    value = record.value
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return _encode_line(f"{record.name}{FIELD_SEPARATOR}{text}")


def parse_stat_record(line: str) -> StatRecord:
    """A ``STATS`` record; its value an ``int`` when it has no decimal point."""
    name, text = _split_record(line, 2, "STATS")[:2]
    if not _STAT_NAME.fullmatch(name):
        raise errors.ProtocolError(f"bad name in STATS record: {_shorten(line)!r}")
    if _STAT_INTEGER.fullmatch(text):
        return StatRecord(name, int(text))
    if _STAT_DECIMAL.fullmatch(text):
        return StatRecord(name, float(text))
    raise errors.ProtocolError(f"bad value in STATS record: {_shorten(line)!r}")


def format_status_time(moment: datetime) -> str:
    return moment.strftime(STATUS_TIME_FORMAT)


def encode_client_record(record: ClientRecord) -> bytes:
    finished = NOT_FINISHED if record.finished is None else format_status_time(record.finished)
    fields: tuple[str, ...] = (record.name, format_status_time(record.accepted), finished)
    fields += (record.address,) if record.node is None else (record.address, record.node)
    return _encode_line(FIELD_SEPARATOR.join(fields))


def parse_client_record(line: str) -> ClientRecord:
    fields = _split_record(line, 4, "STATUS")
    try:
        accepted = datetime.strptime(fields[1], STATUS_TIME_FORMAT)
        finished = (
            None if fields[2] == NOT_FINISHED else datetime.strptime(fields[2], STATUS_TIME_FORMAT)
        )
    except ValueError:
        raise errors.ProtocolError(f"bad time in STATUS record: {line!r}") from None
    node = fields[4] if len(fields) > 4 else None  # (several servers as one)
    return ClientRecord(fields[0], accepted, finished, fields[3], node)


def encode_file_info(info: FileInfo) -> bytes:
    fields = (info.path, str(info.size), format_file_time(info.mtime))
    return _encode_line(FIELD_SEPARATOR.join(fields))


def parse_file_info(line: str) -> FileInfo:
    # A listing is up to a million of these: the checks of _split_record and
    # _parse_size inline.
    fields = line.split(FIELD_SEPARATOR)
    if len(fields) < 3:
        fields = _split_record(line, 3, "FILES")  # raises
    text = fields[1]
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        _parse_size(text)  # raises
    size = int(text)
    try:
        mtime = parse_file_time(fields[2])
    except ValueError:
        raise errors.ProtocolError(f"bad time in FILES record: {line!r}") from None
    return _new_file_info(fields[0], size, mtime)


# A frozen dataclass's __init__ sets each field through object.__setattr__ (0.7 µs
# a record, a listing's largest cost after the split); its slots' own setters
# make the same object in a third of that.
_SET_PATH, _SET_SIZE, _SET_MTIME = (vars(FileInfo)[name].__set__ for name in FileInfo.__slots__)


def _new_file_info(path: str, size: int, mtime: datetime) -> FileInfo:
    info = object.__new__(FileInfo)
    _SET_PATH(info, path)
    _SET_SIZE(info, size)
    _SET_MTIME(info, mtime)
    return info


def _split_record(line: str, count: int, kind: str) -> list[str]:
    fields = line.split(FIELD_SEPARATOR)
    if len(fields) < count:  # more fields are allowed: later versions may add some
        raise errors.ProtocolError(f"{kind} record needs {count} fields: {line!r}")
    return fields


# --------------------------------------------------------------------------
# Replies (server → client)


@dataclass(frozen=True, slots=True)
class NameReply:
    name: str


@dataclass(frozen=True, slots=True)
class FullReply:
    reason: str


@dataclass(frozen=True, slots=True)
class WelcomeReply:
    """``WELCOME <name> <server>``, and `` proto=2`` when v2 was asked for:
    ``server`` is the text for people, without that field."""

    name: str
    server: str
    protocol: int = 1


@dataclass(frozen=True, slots=True)
class PongReply:
    pass


@dataclass(frozen=True, slots=True)
class WhoReply:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UptimeReply:
    seconds: int


@dataclass(frozen=True, slots=True)
class AboutReply:
    text: str


@dataclass(frozen=True, slots=True)
class HelpReply:
    text: str


@dataclass(frozen=True, slots=True)
class StatusReply:
    """``STATUS <count>``: ``count`` client records follow."""

    count: int


@dataclass(frozen=True, slots=True)
class StatsReply:
    """``STATS <count>``: ``count`` records ``<name> TAB <value>`` follow."""

    count: int


@dataclass(frozen=True, slots=True)
class FilesReply:
    """``FILES <count>``: ``count`` file records follow."""

    count: int


@dataclass(frozen=True, slots=True)
class FileReply:
    """``FILE <size> <sha256> <path>``: exactly ``size`` raw bytes follow.

    ``sha256`` None is ``FILE <size> - <path>`` (v2 only): the server did not
    know the digest, and sends it after the body, as a :class:`DigestReply`
    (or ``ERR changed`` when the file changed while it was sent)."""

    size: int
    sha256: str | None
    path: str


@dataclass(frozen=True, slots=True)
class DigestReply:
    """``DIGEST <sha256>``: the SHA-256 of the body just sent, after a
    ``FILE <size> - <path>`` header."""

    sha256: str


@dataclass(frozen=True, slots=True)
class HashReply:
    """``HASH <size> <sha256> <mtime> <path>``: no body follows."""

    file: FileDigest


@dataclass(frozen=True, slots=True)
class PartReply:
    """``PART <offset> <size> <sha256> <path>``: exactly ``size - offset`` raw
    bytes follow, the file's from ``offset`` on."""

    offset: int
    size: int
    sha256: str
    path: str

    @property
    def length(self) -> int:
        return self.size - self.offset


@dataclass(frozen=True, slots=True)
class ReadyReply:
    """``READY <offset> <path>``: the server takes the upload; exactly
    ``size - offset`` raw bytes of it follow from the client (``offset`` is
    what it already holds of an interrupted upload of the same file)."""

    offset: int
    path: str


@dataclass(frozen=True, slots=True)
class StoredReply:
    """``STORED <size> <sha256> <path>``: the upload is on the server's disk
    under its final name, its SHA-256 checked."""

    size: int
    sha256: str
    path: str


@dataclass(frozen=True, slots=True)
class AckReply:
    text: str


@dataclass(frozen=True, slots=True)
class ByeReply:
    pass


@dataclass(frozen=True, slots=True)
class ErrorReply:
    code: str
    text: str


Reply = (
    NameReply
    | FullReply
    | WelcomeReply
    | PongReply
    | WhoReply
    | UptimeReply
    | AboutReply
    | HelpReply
    | StatusReply
    | StatsReply
    | FilesReply
    | FileReply
    | DigestReply
    | HashReply
    | PartReply
    | ReadyReply
    | StoredReply
    | AckReply
    | ByeReply
    | ErrorReply
)

# Paths a client may name: at most this many components (folders and the file
# name) and this many UTF-8 bytes per component (Linux's NAME_MAX). A longer
# path names nothing the server serves, so it is refused without touching the
# disk; the listing leaves out what lies deeper.
MAX_PATH_COMPONENTS = 64
MAX_NAME_BYTES = 255


def longest_request_path(max_line: int) -> int:
    """The longest path (UTF-8 bytes) a ``GET`` line fits within ``max_line`` bytes,
    CR and LF included."""
    return max_line - len(b"GET \r\n")


PONG = b"PONG\n"
BYE = b"BYE\n"


def encode_reply(reply: Reply) -> bytes:
    """The line the server sends for ``reply`` (records and bodies follow separately)."""
    match reply:
        case NameReply(name):
            line = f"NAME {name}"
        case FullReply(reason):
            line = f"FULL {reason}"
        case WelcomeReply(name, server, protocol):
            line = f"WELCOME {name} {server}"
            if protocol > 1:
                line += f" {PROTO_PREFIX}{protocol}"
        case PongReply():
            return PONG
        case WhoReply(names):
            line = " ".join(("WHO", *names))
        case UptimeReply(seconds):
            line = f"UPTIME {seconds}"
        case AboutReply(text):
            line = f"ABOUT {text}"
        case HelpReply(text):
            line = f"HELP {text}"
        case StatusReply(count):
            line = f"STATUS {count}"
        case StatsReply(count):
            line = f"STATS {count}"
        case FilesReply(count):
            line = f"FILES {count}"
        case FileReply(size, sha256, path):
            line = f"FILE {size} {UNKNOWN_DIGEST if sha256 is None else sha256} {path}"
        case DigestReply(sha256):
            line = f"DIGEST {sha256}"
        case HashReply(file):
            mtime = format_file_time(file.mtime)
            line = f"HASH {file.size} {file.sha256} {mtime} {file.path}"
        case PartReply(offset, size, sha256, path):
            line = f"PART {offset} {size} {sha256} {path}"
        case ReadyReply(offset, path):
            line = f"READY {offset} {path}"
        case StoredReply(size, sha256, path):
            line = f"STORED {size} {sha256} {path}"
        case AckReply(text):
            line = f"ACK {text}"
        case ByeReply():
            return BYE
        case ErrorReply(code, text):
            line = f"ERR {code} {text}"
        case _:
            assert_never(reply)
    return _encode_line(line)


def parse_reply(line: str) -> Reply:
    """The reply a server's line (decoded, CR and LF removed) carries.

    Raises :class:`ProtocolError` for a line that is no reply of this protocol.
    """
    word, _, rest = line.partition(" ")
    match word:
        case "PONG":
            return PongReply()
        case "BYE":
            return ByeReply()
        case "ACK":
            return AckReply(rest)
        case "NAME":
            if not rest or " " in rest:
                raise errors.ProtocolError(f"bad NAME line: {line!r}")
            return NameReply(rest)
        case "FULL":
            return FullReply(rest)
        case "WELCOME":
            return _parse_welcome(rest)
        case "WHO":
            return WhoReply(tuple(rest.split()))
        case "UPTIME":
            return UptimeReply(_parse_size(rest.split(" ", 1)[0]))
        case "ABOUT":
            return AboutReply(rest)
        case "HELP":
            return HelpReply(rest)
        case "STATUS":
            return StatusReply(_parse_record_count(rest, line))
        case "STATS":
            return StatsReply(_parse_record_count(rest, line))
        case "FILES":
            return FilesReply(_parse_record_count(rest, line))
        case "FILE":
            return _parse_file_reply(line, rest)
        case "DIGEST":
            _check_sha256(rest, "DIGEST line", line)
            return DigestReply(rest)
        case "HASH":
            return _parse_hash_reply(line, rest)
        case "PART":
            return _parse_part_reply(line, rest)
        case "READY":
            offset_text, path = _fields(rest, 2, "READY line", line)
            return ReadyReply(_parse_size(offset_text), path)
        case "STORED":
            size_text, sha256, path = _fields(rest, 3, "STORED line", line)
            _check_sha256(sha256, "STORED line", line)
            return StoredReply(_parse_size(size_text), sha256, path)
        case "ERR":
            code, _, text = rest.partition(" ")
            if not code:
                raise errors.ProtocolError(f"ERR without a code: {line!r}")
            if len(code) > _LONGEST_ERROR_CODE or not _ERROR_CODE.fullmatch(code):
                raise errors.ProtocolError(
                    f"ERR with a code that is not one word: {_shorten(line)!r}"
                )
            return ErrorReply(code, text)
    raise errors.ProtocolError(f"unexpected line from the server: {_shorten(line)!r}")


def _fields(rest: str, count: int, what: str, line: str) -> list[str]:
    """The ``count`` fields of a reply line's ``rest``, the last one (a path) whole."""
    parts = rest.split(" ", count - 1)
    if len(parts) != count or not parts[-1]:
        raise errors.ProtocolError(f"bad {what}: {_shorten(line)!r}")
    return parts


def _parse_file_reply(line: str, rest: str) -> FileReply:
    size_text, sha256, path = _fields(rest, 3, "FILE header", line)
    if sha256 == UNKNOWN_DIGEST:
        return FileReply(_parse_size(size_text), None, path)
    _check_sha256(sha256, "FILE header", line)
    return FileReply(_parse_size(size_text), sha256, path)


def _parse_welcome(rest: str) -> WelcomeReply:
    name, _, server = rest.partition(" ")
    text, space, last = server.rpartition(" ")
    version = last.removeprefix(PROTO_PREFIX)
    if space and last.startswith(PROTO_PREFIX) and version.isascii() and version.isdigit():
        return WelcomeReply(name, text, _parse_size(version))
    return WelcomeReply(name, server)


def _parse_hash_reply(line: str, rest: str) -> HashReply:
    size_text, sha256, mtime_text, path = _fields(rest, 4, "HASH line", line)
    _check_sha256(sha256, "HASH line", line)
    try:
        mtime = parse_file_time(mtime_text)
    except ValueError:
        raise errors.ProtocolError(f"bad time in HASH line: {_shorten(line)!r}") from None
    return HashReply(FileDigest(path, _parse_size(size_text), mtime, sha256))


def _parse_part_reply(line: str, rest: str) -> PartReply:
    offset_text, size_text, sha256, path = _fields(rest, 4, "PART header", line)
    _check_sha256(sha256, "PART header", line)
    offset, size = _parse_size(offset_text), _parse_size(size_text)
    if offset > size:
        raise errors.ProtocolError(f"PART starts past the end of the file: {_shorten(line)!r}")
    return PartReply(offset, size, sha256, path)


def _check_sha256(sha256: str, kind: str, line: str) -> None:
    if not _SHA256_HEX.fullmatch(sha256):
        raise errors.ProtocolError(f"bad SHA-256 in {kind}: {_shorten(line)!r}")


def _parse_record_count(rest: str, line: str) -> int:
    count = _parse_size(rest.split(" ", 1)[0])
    if count > MAX_RECORDS:
        raise errors.ProtocolError(
            f"the server announced {count} records, over the limit of {MAX_RECORDS}: "
            f"{_shorten(line)!r}"
        )
    return count


def _parse_size(text: str) -> int:
    # Digits only: int() would also take "+1", " 1", "1_000" and "١".
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise errors.ProtocolError(f"not a whole number: {_shorten(text)!r}")
    return int(text)


def _encode_line(line: str) -> bytes:
    if "\n" in line:
        raise ValueError("a protocol line cannot hold a line feed")
    return line.encode("utf-8") + b"\n"


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
