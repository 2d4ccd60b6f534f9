"""What both command lines share: environment-variable twins, value parsers, help layout.

Every option that has an environment-variable twin reads it through
:func:`env_default`; the command line wins over the environment. The client's
are ``FILEDOCK_<OPTION>`` (``FILEDOCK_HOST``, ``FILEDOCK_PORT``,
``FILEDOCK_DOWNLOADS``, ``FILEDOCK_TIMEOUT``, and ``FILEDOCK_TOKEN``, a token
itself); the server's are ``FILEDOCK_SERVER_<OPTION>``
(``FILEDOCK_SERVER_MAX_CLIENTS``), so a server and a client started from one
shell do not read each other's. The server still reads its older
``FILEDOCK_<OPTION>`` names when the new one is unset.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..client.client import MAX_SECONDS, check_line_limit, check_port, check_seconds
from ..protocol import MAX_LINE_LIMIT
from .pings import MAX_COUNT, check_count

ENV_PREFIX = "FILEDOCK_"
SERVER_ENV_PREFIX = "FILEDOCK_SERVER_"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def server_env_name(field: str) -> str:
    return SERVER_ENV_PREFIX + field.upper()


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Epilogs as written, defaults shown (unless the help says its own default)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default: " in text:  # a default worked out at run time, said in words
            return text
        return super()._get_help_string(action)


def env_default(
    parser: argparse.ArgumentParser,
    field: str,
    default: Any,
    kind: Callable[[str], Any],
    names: Sequence[str] = (),
) -> Any:
    """The first of ``names`` that is set (``FILEDOCK_<FIELD>`` when none are given),
    read as the option would read it, or ``default`` when none is set.

    A value the option would refuse is a usage error, naming the variable.
    """
    for name in names or (env_name(field),):
        raw = os.environ.get(name)
        if raw is not None:
            break
    else:
        return default
    try:
        return kind(raw)
    except argparse.ArgumentTypeError as exc:  # our parsers say what they want
        parser.error(f"{name}: {exc}")
    except ValueError:  # int(), float() and str.upper say nothing useful
        parser.error(f"{name}={raw!r} is not a valid {getattr(kind, '__name__', kind)}")


def _plain_number(text: str) -> str:
    """``text`` if it is written in ASCII with no ``_``: Python's own parsers also
    read ``5_0000`` and other scripts' digits, which nobody means on a command line."""
    if not text.isascii() or "_" in text:
        raise ValueError(text)
    return text


def port_number(text: str) -> int:
    """A ``--port`` value: a whole number from 1 to 65535."""
    try:
        return check_port(int(_plain_number(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)") from None


def ping_count(text: str) -> int:
    """A ``ping -c`` value: how many pings, from 1 on."""
    try:
        return check_count(int(_plain_number(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of pings (1 to {MAX_COUNT})"
        ) from None


def line_limit(text: str) -> int:
    """A ``--max-line`` value: a whole number of bytes a server's limit may be."""
    try:
        return check_line_limit(int(_plain_number(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a line limit in bytes (64 to {MAX_LINE_LIMIT})"
        ) from None


def seconds(text: str) -> float:
    """A time in seconds: over 0, finite."""
    try:
        return check_seconds("a time", float(_plain_number(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time in seconds (over 0, at most {MAX_SECONDS:.0f})"
        ) from None


def seconds_or_none(text: str) -> float:
    """A time in seconds, or 0 for none."""
    try:
        value = float(_plain_number(text))
    except ValueError:
        value = math.nan
    if value == 0:
        return 0.0
    try:
        return check_seconds("a time", value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time in seconds (0 for none, at most {MAX_SECONDS:.0f})"
        ) from None


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"(\d{1,20})([KMGT]?)(?:i?B)?", re.IGNORECASE | re.ASCII)


def byte_count(text: str) -> int:
    """A size in bytes: digits, with an optional K, M, G or T (powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or not match.group(1).isascii():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size in bytes (such as 1000000, 500K, 2G)"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
