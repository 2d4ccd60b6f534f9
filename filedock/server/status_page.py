"""What ``/status.json`` says (every field is in the README's "Watching the
server"), and the page that shows it, read once from the package's data.

Everything here reads the server's state on its event loop and copies it
into plain values: no file of the repository is read, nothing is changed.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..protocol import ClientRecord
from .activity import Activity
from .context import ServerContext
from .throughput import Throughput

if TYPE_CHECKING:
    from .session import Session

# Finished clients shown after the connected ones: the recent end of STATUS.
HISTORY_SHOWN = 50


class Rates:
    """Each transfer's rate, from what it had done when first seen to what it has done now.

    Not ``done`` over the time since it started: a part (``RANGE``) or a resumed
    upload starts at its offset, and would show a rate it never had.
    """

    def __init__(self) -> None:
        self._first: dict[Activity, tuple[int, float]] = {}

    def update(self, activities: list[Activity], now: float) -> dict[Activity, int]:
        """The rate of each of ``activities`` (bytes a second); the others are forgotten."""
        self._first = {a: self._first.get(a, (a.done, now)) for a in activities}
        rates = {}
        for activity, (done, seen) in self._first.items():
            seconds = now - seen
            rates[activity] = round((activity.done - done) / seconds) if seconds > 0 else 0
        return rates


def status_document(
    context: ServerContext, throughput: Throughput, rates: Rates, *, stopping: bool
) -> dict[str, Any]:
    now = time.monotonic()
    clients = sorted(
        (s for s in context.sessions if s.entry is not None and s.entry.finished is None),
        key=lambda s: s.entry.number if s.entry else 0,
    )
    doing = [(session, session.activity) for session in clients]
    rate = rates.update([activity for _, activity in doing if activity is not None], now)
    return {
        "server": {
            "banner": context.banner,
            "time": round(time.time(), 3),
            "uptime": context.uptime(),
            "max_clients": context.config.max_clients,
            "stopping": stopping,
        },
        "clients": [_client(session, activity, rate, now) for session, activity in doing],
        "transfers": [
            _transfer(session, activity, rate, now)
            for session, activity in doing
            if activity is not None and activity.size is not None
        ],
        "history": [_record(record) for record in context.registry.snapshot()[-HISTORY_SHOWN:]],
        "counters": [
            {
                "name": sample.name,
                "kind": sample.kind.value,
                "labels": dict(sample.labels),
                "value": sample.value,
                "help": sample.help,
            }
            for sample in context.stats.samples()
        ],
        "rate": {"interval": 1, "bytes_per_second": throughput.series()},
    }


def _client(
    session: Session, activity: Activity | None, rate: dict[Activity, int], now: float
) -> dict[str, Any]:
    assert session.entry is not None
    return {
        "name": session.entry.name,
        "address": session.entry.address,
        "since": round(session.entry.accepted, 3),
        "activity": None if activity is None else _doing(activity, rate, now),
    }


def _doing(activity: Activity, rate: dict[Activity, int], now: float) -> dict[str, Any]:
    return {
        "verb": activity.verb,
        "path": activity.path,
        "size": activity.size,
        "done": activity.done,
        "seconds": round(max(now - activity.started, 0.0), 3),
        "rate": rate.get(activity, 0),
    }


def _transfer(
    session: Session, activity: Activity, rate: dict[Activity, int], now: float
) -> dict[str, Any]:
    assert session.entry is not None
    return {"client": session.entry.name, **_doing(activity, rate, now)}


def _record(record: ClientRecord) -> dict[str, Any]:
    finished = record.finished
    return {
        "name": record.name,
        "address": record.address,
        "connected": record.accepted.timestamp(),
        "finished": None if finished is None else finished.timestamp(),
    }


@dataclass(frozen=True, slots=True)
class Page:
    """The status page: one HTML document, its style and script inside it."""

    html: bytes
    policy: str  # the Content-Security-Policy: only this page's own script may run


def load_page(*, token_required: bool) -> Page:
    """The page; with ``token_required`` it asks for a token before its first read."""
    folder = resources.files(__package__ or "filedock.server") / "page"
    style = (folder / "status.css").read_text("utf-8")
    script = (folder / "status.js").read_text("utf-8")
    html = (folder / "status.html").read_text("utf-8")
    html = html.replace("/*token*/", "required" if token_required else "")
    html = html.replace("/*style*/", style).replace("/*script*/", script)
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    policy = (
        "default-src 'none'; connect-src 'self'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return Page(html.encode("utf-8"), policy)
