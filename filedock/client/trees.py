"""The local side of a folder's download and of a mirror: extras, deletions, the summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import FiledockError, SaveError
from .plan import Action, FilePlan
from .results import Change, DownloadResult, Outcome, TreeSummary


def local_extras(
    root: Path, plans: Iterable[FilePlan], unreadable: list[OSError] | None = None
) -> list[Path]:
    """Files under ``root`` that no plan names, sorted; hidden files and folders
    (partial files, resume records, caches) are never among them, nor what a
    symbolic link to a folder holds. A folder that cannot be read is added
    to ``unreadable``: what it holds stays.

    A loop over a stack of folders, not os.walk, which recurses once a level
    before Python 3.12: a mirror of a path thousands of folders deep made one.
    """
    wanted = {plan.dest for plan in plans}
    extras: list[Path] = []
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                found = sorted((entry.name, _kind(entry)) for entry in entries)
        except OSError as exc:
            if unreadable is not None and not isinstance(exc, FileNotFoundError):
                unreadable.append(exc)  # a missing root is only a mirror not made yet
            continue
        below = []
        for name, kind in found:
            path = folder / name
            if name.startswith(".") or kind == "linked folder":
                continue
            if kind == "folder":
                below.append(path)
            elif path not in wanted:
                extras.append(path)
        folders.extend(reversed(below))
    return sorted(extras)


def _kind(entry: os.DirEntry[str]) -> str:
    """ "folder", "linked folder" (a symbolic link to one: left as it is) or "file"."""
    try:
        if entry.is_dir(follow_symlinks=False):
            return "folder"
        return "linked folder" if entry.is_symlink() and entry.is_dir() else "file"
    except OSError:
        return "file"


def remove_empty_folders(root: Path, deleted: Iterable[Path]) -> None:
    """Remove the folders the deletions left empty, up to (not including) ``root``."""
    folders = {path.parent for path in deleted}
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()  # fails, as wanted, on a folder that still holds anything
            except OSError:
                break
            folder = folder.parent


def bytes_to_fetch(plans: Iterable[FilePlan]) -> int:
    """The body bytes a folder's download expects: what the fetches and resumes miss."""
    total = 0
    for plan in plans:
        size = plan.remote.size if plan.remote else plan.listed.size if plan.listed else 0
        if plan.action is Action.FETCH:
            total += size
        elif plan.action is Action.RESUME:
            total += max(size - plan.prefix_length, 0)
    return total


_CHANGE_OF = {
    Outcome.FETCHED: "fetch",
    Outcome.RESUMED: "resume",
    Outcome.REPLACED: "replace",
    Outcome.KEPT: "keep",
}


class Changes:
    """The changes of one call, in order, each told to ``on_change`` as it is decided."""

    def __init__(self, on_change: Callable[[Change], None] | None) -> None:
        self._on_change = on_change
        self.changes: list[Change] = []
        self.deleted = 0
        self.failed_deletes = 0

    def _add(self, change: Change) -> None:
        self.changes.append(change)
        if self._on_change is not None:
            self._on_change(change)

    def planned(self, plan: FilePlan) -> None:
        """The change a plan makes (none for a file skipped)."""
        if plan.action is Action.SKIP or plan.dest is None:
            return
        size = plan.remote.size if plan.remote else plan.listed.size if plan.listed else 0
        if plan.action is Action.FAIL:
            self._add(Change("fail", plan.path, plan.dest, size, plan.error))
            return
        action = _CHANGE_OF[plan.outcome()]
        self._add(Change(action, plan.path, plan.dest, size))

    def delete(self, path: Path, *, dry_run: bool) -> None:
        """Delete a local file the server does not have (only say so, with ``dry_run``).

        One that cannot be deleted (a read-only folder, a folder there now) is
        a failed change that says why: the destination does not match.
        """
        size = 0
        try:
            size = path.lstat().st_size
            if not dry_run:
                path.unlink()
        except FileNotFoundError:
            return  # gone already: nothing to do
        except OSError as exc:
            self.failed_deletes += 1
            error = SaveError(f"cannot delete {path}: {exc.strerror}")
            self._add(Change("fail", "", path, size, error))
            return
        self.deleted += 1
        self._add(Change("delete", "", path, size))

    def unreadable(self, exc: OSError) -> None:
        """A local folder whose files could not be looked at for deletion."""
        self.failed_deletes += 1
        folder = Path(exc.filename or "")
        error = SaveError(f"cannot look in {folder} for files to delete: {exc.strerror}")
        self._add(Change("fail", "", folder, 0, error))

    def summary(
        self, plans: list[FilePlan], results: list[DownloadResult | FiledockError], received: int
    ) -> TreeSummary:
        """The summary, ``received`` being the body bytes the call received."""
        counts = dict.fromkeys(Outcome, 0)
        failed = 0
        for result in results:
            if isinstance(result, FiledockError):
                failed += 1
                continue
            counts[result.outcome] += 1
        # A file that failed only once moving is a change too.
        planned_fail = {change.path for change in self.changes if change.action == "fail"}
        for plan, result in zip(plans, results, strict=False):
            if isinstance(result, FiledockError) and plan.path not in planned_fail:
                size = plan.listed.size if plan.listed else 0
                local = plan.dest if plan.dest is not None else Path(plan.path)
                self.changes.append(Change("fail", plan.path, local, size, result))
        return TreeSummary(
            fetched=counts[Outcome.FETCHED] + counts[Outcome.RESUMED],
            skipped=counts[Outcome.SKIPPED],
            replaced=counts[Outcome.REPLACED],
            deleted=self.deleted,
            failed=failed + self.failed_deletes,
            kept=counts[Outcome.KEPT],
            bytes=received,
            changes=self.changes,
            results=results,
        )
