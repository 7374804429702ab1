"""The pairs of a job and the inputs that cannot pair, held on disk so that memory does not grow with their number.

A `PairTable` is a private temporary SQLite database (SQLite deletes it when the connection closes, and a killed
process leaves nothing behind): sources add the files they find (`add_folder`, `add_file`), `pair` matches them
by (split, exact key) and gives each pair its output name and split, and the runner reads the pairs back in
(split, key) order, one at a time. Pairing 1M pairs of files this way holds a few MiB of Python objects instead
of about 0.9 KB per pair; its rules are the module docstring of `pairing.py`.

Folders are listed when `pair` runs, unless the table may reuse the pairing the last run saved in its output
folder (`reuse_from`, see `saved_pairing.py`) and none of them has changed since; the runner saves each run's
pairing there (`save`).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic_core import from_json

from pairforge import __version__
from pairforge.errors import PairforgeError
from pairforge.prep import saved_pairing
from pairforge.prep.imageio import IMAGE_EXTENSIONS
from pairforge.prep.pairing import SPLITS, KeyRule, Pair, Rejection, SplitSpec, hash_order, safe_key, suffixed_names
from pairforge.safety import is_folder

CACHE_KIB = 16 * 1024
"""SQLite's page cache: what the table may hold in memory before it spills to its temporary file."""
BATCH = 1_000
"""Directory entries classified and inserted together."""


DISK_ERRORS = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN}


@contextmanager
def _disk_errors(saving_in: Path | None = None) -> Iterator[None]:
    """SQLite failing to write its temporary file, or the saved pairing in `saving_in` (a full disk, say), ends the
    command: one line, exit 1."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if (exc.sqlite_errorcode & 0xFF) not in DISK_ERRORS:
            raise
        if saving_in is not None:
            raise PairforgeError(
                f"saving the pairing in {saving_in} ({exc}): free space there, then run the same command again"
            ) from None
        raise PairforgeError(
            f"pairing needs temporary disk space in {_sqlite_temp_folder()} ({exc}); free some there or set TMPDIR"
            " to a folder with room, then run the same command again"
        ) from None


def _on_disk(method: Callable) -> Callable:
    @functools.wraps(method)
    def guarded(*args, **kwargs):
        with _disk_errors():
            return method(*args, **kwargs)

    return guarded


def _sqlite_temp_folder() -> str:
    """Where SQLite puts its temporary files: the first writable of these (its own order, on Unix)."""
    candidates = [os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"), "/var/tmp", "/usr/tmp", "/tmp"]
    return next((c for c in candidates if c and os.path.isdir(c) and os.access(c, os.W_OK)), ".")


class PairTable:
    """Files found by role, then (after `pair`) the pairs, iterated in (split, key) order, and the rejections."""

    def __init__(self, reuse_from: Path | None = None) -> None:
        """`reuse_from`: the output folder whose saved pairing `pair` takes when it was made by the same plan from
        folders that have not changed since (None: always list the folders)."""
        self._db = sqlite3.connect("")  # "": a temporary database on disk, deleted when closed
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{CACHE_KIB}", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(
            """
            CREATE TABLE files(role TEXT, split TEXT, key TEXT, rel TEXT, extension TEXT);
            CREATE TABLE rejected(id INTEGER PRIMARY KEY, paths TEXT, reason TEXT);
            CREATE TABLE found(
                split TEXT, key TEXT, name TEXT, sources TEXT, roles INT, extensions TEXT, files INT, rank TEXT
            );
            CREATE TABLE pairs(id INTEGER PRIMARY KEY, split TEXT, name TEXT, sources TEXT);
            """
        )  # explicit ids: the order rows are read back in, kept when saved (VACUUM may renumber plain rowids)
        self._count = 0
        self.extensions: set[str] = set()
        """The lower-case extensions of the paired files."""
        self._reuse_from = reuse_from
        self._scans: list[tuple[Path, str, KeyRule, str, str | None]] = []
        """The folder listings `pair` runs (unless it reuses a saved pairing): (root, prefix, rule, role, split)."""
        self._only_scans = True
        """Whether every file comes from `_scans` (only such a pairing can be saved and reused)."""
        self._to_save: tuple[str, list] | None = None
        """After `pair`: the plan and the state of the folders it listed, when they can be trusted (`save`)."""
        self._reused = False

    @classmethod
    @_on_disk
    def of(cls, pairs: Iterable[Pair], rejected: Iterable[Rejection] = ()) -> PairTable:
        """A table of the pairs (keys already output names) and rejections a source found itself."""
        table = cls()
        rows = ((p.split, p.key, p.key, _dumps(p.sources)) for p in table._noting_extensions(pairs))
        table._db.executemany("INSERT INTO found(split, key, name, sources) VALUES (?, ?, ?, ?)", rows)
        table.reject(rejected)
        table._finish()
        return table

    @_on_disk
    def add_folder(
        self, root: Path, rule: KeyRule, role: str, by_split: bool = False, split: str = "", under: str = ""
    ) -> None:
        """Index the folder `root/under` for `role` (when `pair` runs): flat (every file in `split`), or by its
        `train/val/test` sub-folders when `by_split`. Paths are kept relative to `root`; hidden files, folders,
        non-images and names `rule` cannot key are rejections. One `os.scandir` per folder (file types from the
        directory entries, no stat per file)."""
        prefix = f"{under}/" if under else ""
        if not by_split:
            self._scans.append((root, prefix, rule, role, split))
            return
        for name in SPLITS:
            if (root / prefix / name).is_dir():
                self._scans.append((root, f"{prefix}{name}/", rule, role, name))
        self._scans.append((root, prefix, rule, role, None))

    @_on_disk
    def add_file(self, role: str, split: str, key: str, rel: str) -> None:
        """One file a source found and keyed itself."""
        self._only_scans = False
        extension = os.path.splitext(rel)[1].lower()
        self._db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?)", (role, split, key, rel, extension))

    @_on_disk
    def reject(self, rejections: Iterable[Rejection]) -> None:
        self._only_scans = False
        self._insert_rejected((_dumps(r.paths), r.reason) for r in rejections)

    @_on_disk
    def pair(self, roles: list[str], spec: SplitSpec | None = None, seed: int = 0, flat: str = "") -> None:
        """Match the files by (split, exact key) across `roles`: files with a role missing, or sharing their key
        with another file of their role, become rejections. Files found without a split are split by `spec`
        (from the hash of their output name and `seed`; pairs beyond `--split` counts are rejections), or all
        put in `flat` when `spec` is None. Takes the saved pairing instead when it can (`reuse_from`)."""
        plan = self._plan(roles, spec, seed, flat)
        if self._take_saved(plan):
            return
        listed_at = time.time_ns()
        states = [self._add_entries(*scan) for scan in self._scans]
        self._db.execute("CREATE INDEX files_by_key ON files(split, key, role, rel, extension)")  # covering
        ranked = spec is not None
        self._db.create_function("safe_key", 1, safe_key, deterministic=True)
        self._db.create_function("rank_of", 1, lambda name: hash_order(name, seed), deterministic=True)
        self._group(ranked)
        self._reject_ambiguous(ranked)
        self._name_outputs(ranked)
        self._reject_one_sided(roles)
        if spec is None:
            chosen, bounds = "CASE WHEN split = '' THEN ? ELSE split END", (flat,)
        else:
            bounds = self._split_bounds(spec)
            beyond = self._db.execute(
                "SELECT sources FROM found WHERE split = '' AND rank > ? ORDER BY rank", bounds[2:]
            )
            self._insert_rejected((sources, f"beyond --split counts ({spec})") for (sources,) in beyond)
            chosen = (
                "CASE WHEN split != '' THEN split WHEN rank <= ? THEN 'train' WHEN rank <= ? THEN 'val'"
                " WHEN rank <= ? THEN 'test' END"
            )
        self._db.execute("DROP TABLE files")
        self._finish(chosen, bounds)
        if plan is not None and saved_pairing.settled(states, listed_at):
            self._to_save = plan, states

    def _take_saved(self, plan: str | None) -> bool:
        """Take the pairing saved in `reuse_from` by the same `plan`, when none of its folders has changed."""
        saved = saved_pairing.load(self._reuse_from, plan) if plan is not None and self._reuse_from else None
        if saved is None:
            return False
        self._db.close()
        self._db, self.extensions = saved
        (self._count,) = self._db.execute("SELECT count(*) FROM pairs").fetchone()
        self._reused = True
        return True

    def save(self, folder: Path) -> None:
        """Save this pairing in the output `folder` for the next run (`saved_pairing.py`); when it cannot be
        trusted (its folders had just changed), delete the one saved there before, which may no longer hold."""
        if self._reused:
            return
        if self._to_save is None:
            saved_pairing.forget(folder)
            return
        with _disk_errors(saving_in=folder):
            saved_pairing.save(self._db, folder, *self._to_save, self.extensions)

    def _plan(self, roles: list[str], spec: SplitSpec | None, seed: int, flat: str) -> str | None:
        """Everything the pairing is made from but the folders' contents (None: files came from elsewhere too)."""
        if not (self._scans and self._only_scans):
            return None
        scans = [
            [os.path.abspath(root), prefix, repr(rule), role, split] for root, prefix, rule, role, split in self._scans
        ]
        pairing = [roles, repr(spec), seed, flat]
        return json.dumps({"schema": saved_pairing.SCHEMA, "pairforge": __version__, "scans": scans, "pair": pairing})

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Pair]:
        """The pairs in (split, key) order (SQLite compares text as UTF-8 bytes: the order of Python strings)."""
        with _disk_errors():
            for split, name, sources in self._db.execute("SELECT split, name, sources FROM pairs ORDER BY id"):
                yield Pair(name, split, from_json(sources))

    def rejections(self) -> Iterator[Rejection]:
        with _disk_errors():
            for paths, reason in self._db.execute("SELECT paths, reason FROM rejected ORDER BY id"):
                yield Rejection(from_json(paths), reason)

    def _add_entries(
        self, root: Path, prefix: str, rule: KeyRule, role: str, split: str | None
    ) -> saved_pairing.FolderState:
        """The entries of `root/prefix`: files of `split`, or (`split` None) the top of a folder whose files
        belong in its split folders, every entry there but those folders being a rejection. Returns the folder's
        state as it was before the listing."""
        folder = os.path.abspath(root / prefix)
        state = saved_pairing.folder_state(folder)
        with os.scandir(folder) as entries:
            while batch := list(itertools.islice(entries, BATCH)):
                files, rejected = [], []
                for entry in batch:
                    name = entry.name
                    if split is None:
                        if name not in SPLITS:
                            rejected.append((_dumps({role: name}), _entry_problem(entry, "", None, by_split=True)))
                        continue
                    extension = os.path.splitext(name)[1].lower()
                    key = rule.key_of(name) if extension in IMAGE_EXTENSIONS else None
                    if key is None or name.startswith(".") or is_folder(entry):
                        reason = _entry_problem(entry, extension, key, by_split=False)
                        rejected.append((_dumps({role: prefix + name}), reason))
                    else:
                        files.append((role, split, key, prefix + name, extension))
                self._db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?)", files)
                self._insert_rejected(rejected)
        return state

    def _insert_rejected(self, rows: Iterable[tuple[str, str]]) -> None:
        """Rejections as (paths as JSON, reason)."""
        self._db.executemany("INSERT INTO rejected(paths, reason) VALUES (?, ?)", rows)

    def _group(self, ranked: bool, where: str = "", params: tuple = ()) -> None:
        """Group the files by (split, key), in SQLite (sources as JSON objects in role order): no Python object is
        made per file. Each group is named by its safe key for now (Python's `safe_key` runs only for keys that
        are not safe already) and, when `ranked` and it has no split, ranked by `rank_of` (sha256(seed:name))."""
        rank = "CASE WHEN split = '' THEN rank_of(name) END" if ranked else "NULL"
        self._db.execute(
            f"INSERT INTO found SELECT *, {rank} FROM (SELECT split, key, CASE WHEN key GLOB '*[^A-Za-z0-9._-]*'"
            " OR key GLOB '[._]*' OR key GLOB '*[._]' OR key = '' THEN safe_key(key) ELSE key END AS name,"
            " json_group_object(role, rel), count(DISTINCT role), group_concat(DISTINCT extension), count(*)"
            f" FROM files {where} GROUP BY split, key)",
            params,
        )

    def _reject_ambiguous(self, ranked: bool) -> None:
        """Files sharing (role, split, key) with another: none of them can be told apart, all are rejected, and
        their group is formed again from the other files."""
        groups = self._db.execute("SELECT split, key FROM found WHERE files > roles").fetchall()
        for split, key in groups:
            rows = self._db.execute("SELECT role, rel FROM files WHERE split = ? AND key = ?", (split, key))
            for role, found in itertools.groupby(sorted(rows), key=lambda row: row[0]):
                rels = [rel for _, rel in found]
                if len(rels) > 1:
                    reason = f"ambiguous key {key!r}: {', '.join(rels)}"
                    self._insert_rejected((_dumps({role: rel}), reason) for rel in rels)
                    self._db.execute("DELETE FROM files WHERE role = ? AND split = ? AND key = ?", (role, split, key))
            self._db.execute("DELETE FROM found WHERE split = ? AND key = ?", (split, key))
            self._group(ranked, "WHERE split = ? AND key = ?", (split, key))

    def _reject_one_sided(self, roles: list[str]) -> None:
        """Groups without every role: each of their files is rejected, naming the roles it lacks. Notes the
        extensions of the rest (`extensions`)."""
        one_sided = self._db.execute("SELECT sources FROM found WHERE roles < ?", (len(roles),))
        self._insert_rejected(
            (_dumps({role: rel}), f"no matching {' or '.join(r for r in roles if r not in group)} file")
            for group in (from_json(sources) for (sources,) in one_sided)
            for role, rel in group.items()
        )
        self._db.execute("DELETE FROM found WHERE roles < ?", (len(roles),))
        for (extensions,) in self._db.execute("SELECT DISTINCT extensions FROM found"):
            self.extensions.update(extensions.split(","))  # image extensions: no commas

    def _name_outputs(self, ranked: bool) -> None:
        """Keys whose safe names clash (ignoring case) get `pairing.suffixed_names` (and their rank again); all
        others keep their safe name. SQLite's lower() is ASCII-only, which is enough: safe names are ASCII."""
        self._db.execute("CREATE INDEX found_by_name ON found(lower(name))")
        clashing = [
            key
            for (key,) in self._db.execute(
                "SELECT DISTINCT key FROM found WHERE lower(name) IN"
                " (SELECT lower(name) FROM found GROUP BY lower(name) HAVING count(DISTINCT key) > 1)"
            )
        ]
        if not clashing:
            return

        def taken(name: str) -> bool:
            found = self._db.execute("SELECT 1 FROM found WHERE lower(name) = ? LIMIT 1", (name.casefold(),))
            return found.fetchone() is not None

        renamed = suffixed_names(clashing, taken)
        self._db.executemany("UPDATE found SET name = ? WHERE key = ?", ((n, k) for k, n in renamed.items()))
        if ranked:
            self._db.execute(
                "UPDATE found SET rank = rank_of(name) WHERE split = '' AND key IN (SELECT value FROM json_each(?))",
                (json.dumps(clashing),),
            )

    def _split_bounds(self, spec: SplitSpec) -> tuple[str, str, str]:
        """The highest rank of train, val and test (`assign_splits`'s cut by `spec`, found in the rank index):
        "" where a split is empty, "g" (above every hex digest) where it takes all that are left."""
        self._db.execute("CREATE INDEX found_by_rank ON found(rank) WHERE split = ''")
        (n,) = self._db.execute("SELECT count(*) FROM found WHERE split = ''").fetchone()
        bounds, end = [], 0
        for size in spec.sizes(n):
            end += size
            if size <= 0:
                bounds.append(bounds[-1] if bounds else "")
            elif end >= n:
                bounds.append("g")
            else:
                found = "SELECT rank FROM found WHERE split = '' ORDER BY rank LIMIT 1 OFFSET ?"
                bounds.append(self._db.execute(found, (end - 1,)).fetchone()[0])
        return bounds[0], bounds[1], bounds[2]

    def _noting_extensions(self, pairs: Iterable[Pair]) -> Iterator[Pair]:
        for pair in pairs:
            self.extensions.update(os.path.splitext(rel)[1].lower() for rel in pair.sources.values())
            yield pair

    def _finish(self, chosen: str = "split", bounds: tuple = ()) -> None:
        """The pairs copied in (split, key) order, with their split `chosen` (NULL: none), to be read back in the
        order they are stored (no index, no lookups)."""
        self._db.execute(
            "INSERT INTO pairs(split, name, sources) SELECT * FROM"
            f" (SELECT {chosen} AS chosen, name, sources FROM found) WHERE chosen IS NOT NULL ORDER BY chosen, name",
            bounds,
        )
        self._db.execute("DROP TABLE found")
        (self._count,) = self._db.execute("SELECT count(*) FROM pairs").fetchone()


def _dumps(paths: dict[str, str]) -> str:
    return json.dumps(paths, ensure_ascii=False)


def _entry_problem(entry: os.DirEntry, extension: str, key: str | None, by_split: bool) -> str:
    """Why a directory entry cannot be a pair member."""
    if entry.name.startswith("."):
        return "hidden file"
    if is_folder(entry):
        if by_split:
            return "sub-folder is not a split (train, val, test)"
        return "sub-folder ignored (files are read from this folder only)"
    if by_split:
        return "file outside the split folders (train, val, test)"
    if extension not in IMAGE_EXTENSIONS:
        return f"not an image file ({os.path.splitext(entry.name)[1] or 'no extension'})"
    return "name does not match --match"
