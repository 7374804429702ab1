"""A job's pairing saved in its output folder (`.pairing.sqlite`), taken again by the next run while none of the
folders it listed has changed: a no-op re-run of 1M pairs then lists no folder and sorts nothing.

A folder's mtime and ctime change whenever a file in it is added, removed or renamed (what git's untracked cache
relies on, for the same reason), so the saved pairing is reused only when every listed folder has the device,
inode, mtime and ctime recorded when it was listed, and the plan (the folders, key rules, roles, split options and
pairforge's pairing schema) is the same. Pairing reads names only, never file contents, so edited images do not
matter here (the runner checks outputs, not pairing). A folder changed within `SETTLE_S` before it was listed is
not trusted (a second change in the same clock tick would leave its times as they were): its pairing is not saved.
`--verify` lists every folder again.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from pairforge.prep.imageio import atomic_file

NAME = ".pairing.sqlite"
"""In the output folder (hidden: not a dataset file; `check` ignores it)."""
SCHEMA = 1
"""Raised whenever the pairing rules change, so that no pairing saved by an older pairforge is reused."""
SETTLE_S = 2.0
"""How long before its listing a folder must last have changed for its pairing to be saved."""

FolderState = list
"""[path, device, inode, mtime_ns, ctime_ns] of a listed folder (a list: what JSON gives back)."""


def folder_state(path: str) -> FolderState:
    stat = os.stat(path)
    return [path, stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns]


def settled(states: list[FolderState], listed_at_ns: int) -> bool:
    """Whether every folder last changed at least `SETTLE_S` before the listing began."""
    limit = listed_at_ns - int(SETTLE_S * 1e9)
    return all(max(mtime, ctime) < limit for *_, mtime, ctime in states)


def load(folder: Path, plan: str) -> tuple[sqlite3.Connection, set[str]] | None:
    """The saved pairing of `folder` (a read-only database with the tables `pairs` and `rejected`) and its file
    extensions, when it was saved for `plan` and no folder it listed has changed since; else None (also for a
    saved file that is not a readable pairing: it is replaced at the next save)."""
    path = folder / NAME
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.DatabaseError:  # unreadable
        return None
    try:
        row = db.execute("SELECT plan, folders, extensions FROM saved").fetchone()
        if row is not None and row[0] == plan and _unchanged(json.loads(row[1])):
            return db, set(json.loads(row[2]))
    except (sqlite3.DatabaseError, ValueError):
        pass
    db.close()
    return None


def save(db: sqlite3.Connection, folder: Path, plan: str, states: list[FolderState], extensions: set[str]) -> None:
    """Save the pairing held in `db` (its `pairs` and `rejected` tables) to `folder`, atomically."""
    db.execute("CREATE TABLE IF NOT EXISTS saved(plan TEXT, folders TEXT, extensions TEXT)")
    db.execute("DELETE FROM saved")
    db.execute("INSERT INTO saved VALUES (?, ?, ?)", (plan, json.dumps(states), json.dumps(sorted(extensions))))
    db.commit()  # VACUUM runs outside a transaction
    with atomic_file(folder / NAME) as fh:  # VACUUM INTO fills the empty temporary file: live tables, compacted
        db.execute("VACUUM INTO ?", (fh.name,))


def forget(folder: Path) -> None:
    """Delete the saved pairing of `folder` (when this run's could not be trusted)."""
    (folder / NAME).unlink(missing_ok=True)


def _unchanged(states: list[FolderState]) -> bool:
    try:
        return all(folder_state(state[0]) == state for state in states)
    except OSError:
        return False
