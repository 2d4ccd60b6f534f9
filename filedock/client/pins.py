"""Trust on first use for TLS, as ssh's ``known_hosts``: :class:`KnownServers`.

A TLS server whose certificate no trusted CA signed (a self-signed one) is
pinned the first time the client connects to it: the SHA-256 fingerprint of
its certificate goes into the known-servers file, one line per server::

    127.0.0.1:50000 AB:CD:…:EF

(``[::1]:50000`` for IPv6; the fingerprint as ``openssl x509 -noout
-fingerprint -sha256`` prints it; blank lines and ``#`` comments are
ignored). Later connections take that server only with that certificate: a
different one is refused with both fingerprints (:class:`CertificateChanged`),
until it is accepted (``accept_new=True``, the command line's
``--accept-new-certificate``) or its line deleted. The file is
``$XDG_STATE_HOME/filedock/known_servers``, else
``~/.local/state/filedock/known_servers``.

A file that cannot be read, or has a line that is not ``host:port
fingerprint``, is refused (:class:`KnownServersError`) rather than skipped:
skipping it would pin any certificate the next server shows, the very
one an attacker in the middle would.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from ..errors import ConnectionLost, FiledockError

_FINGERPRINT = re.compile(r"(?:[0-9A-F]{2}:){31}[0-9A-F]{2}")
# What the command line and the library call the way to take a new certificate.
ACCEPT_HINT = "connect once with --accept-new-certificate (library: accept_new_certificate=True)"


def default_known_servers() -> Path:
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "filedock" / "known_servers"


def fingerprint(certificate: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, as openssl prints it (``AB:CD:…``)."""
    digest = hashlib.sha256(certificate).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class KnownServersError(FiledockError):
    """The known-servers file cannot be read, or holds a line it should not."""


class CertificateChanged(ConnectionLost):
    """A pinned server showed another certificate: refused. ``pinned`` and
    ``presented`` are the two fingerprints."""

    def __init__(self, message: str, *, pinned: str, presented: str) -> None:
        super().__init__(message)
        self.pinned = pinned
        self.presented = presented


class KnownServers:
    """The pins in one known-servers file (``path``, None: the default one)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_known_servers()

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise KnownServersError(f"cannot read {self.path}: {reason}") from None

    def pins(self) -> dict[str, tuple[int, str]]:
        """Each server's ``(line number, fingerprint)``; KnownServersError for a bad line."""
        found: dict[str, tuple[int, str]] = {}
        for number, line in enumerate(self._lines(), 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) != 2 or not _FINGERPRINT.fullmatch(words[1].upper()):
                raise KnownServersError(
                    f"{self.path}, line {number}: not 'host:port SHA-256 fingerprint' "
                    f"({line[:80]!r}); fix or delete that line"
                )
            found[words[0]] = (number, words[1].upper())
        return found

    def pinned(self, server: str) -> str | None:
        """The fingerprint pinned for ``server`` (``host:port``), or None."""
        entry = self.pins().get(server)
        return None if entry is None else entry[1]

    def check(self, server: str, presented: str, *, accept_new: bool = False) -> bool:
        """Take ``server``'s certificate with fingerprint ``presented``; whether it
        was pinned now (first use, or ``accept_new`` of a changed one).

        Raises :class:`CertificateChanged` when another one is pinned."""
        entry = self.pins().get(server)
        if entry is not None and entry[1] == presented:
            return False
        if entry is not None and not accept_new:
            number, pinned = entry
            raise CertificateChanged(
                f"TLS: the certificate of {server} is NOT the one pinned for it: "
                f"pinned {pinned}, presented {presented}. Someone may be in the middle, "
                "or the server has a new certificate: if you know it has, "
                f"{ACCEPT_HINT}, or delete line {number} of {self.path}",
                pinned=pinned,
                presented=presented,
            )
        self._write(server, presented)
        return True

    def _write(self, server: str, presented: str) -> None:
        """Pin ``presented`` for ``server``, replacing its line if it had one."""
        kept = [line for line in self._lines() if (line.split() or [""])[0] != server]
        kept.append(f"{server} {presented}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Written whole and renamed: a crash never leaves half a file of pins.
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".known_servers.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write("\n".join(kept) + "\n")
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as exc:
            raise KnownServersError(f"cannot write {self.path}: {exc.strerror}") from None
