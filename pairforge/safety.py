"""The deletion rule, in one place: pairforge deletes only files that its own record (a dataset's manifest, a run
folder's own entries) says it wrote, inside the output it was given. Never an input, never a file it does not know,
never a path outside. Deleting anything that was there before a command started goes through this module:
`delete_recorded` for recorded outputs, `remove_stale_temporaries` and `scratch_folder` for what killed runs left
(pairforge's own names, with the id of a process that is gone).

Before deleting anything it checks that every file can be deleted: a read-only folder is refused with nothing
deleted (never a half-deleted output).
"""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from pairforge.errors import PairforgeError, UsageError

TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.tmp$|^\..+\.tmp-(?P<pid2>\d+)(\.png)?$")
"""The temporary files pairforge writes before `os.replace` (`.<name>.<pid>.tmp`, `.<name>.tmp-<pid>[.png]`)."""


def run_name(name: str, what: str = "--name") -> str:
    """A run name is one folder name inside the runs folder: not empty, not `.`/`..`, no separator, not absolute."""
    bad = not name.strip() or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or os.path.isabs(name)
    if bad:
        raise UsageError(f"{what} {name!r}: a run name is one folder name inside the runs folder (no '/', '..')")
    return name


def real_path(path: Path) -> Path:
    """`path` absolute, with `~` and symbolic links resolved; a symbolic link loop is a usage error (exit 2)."""
    try:
        return path.expanduser().resolve()
    except RuntimeError:  # Python < 3.13 reports a loop so
        raise UsageError(f"{path}: symbolic link loop; give a real folder") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}; give a real folder") from None


def check_apart(out: Path, inputs: dict[str, Path]) -> None:
    """An output inside an input, or an input inside the output, is a usage error (exit 2)."""
    out = real_path(out)
    for role, src in inputs.items():
        src = real_path(src)
        if out == src or src in out.parents:
            raise UsageError(f"output {out} is inside the {role} input {src}; choose a folder outside it")
        if out in src.parents:
            raise UsageError(f"the {role} input {src} is inside the output {out}; choose an output folder outside it")


def inside(root: Path, rel: str) -> Path:
    """`root/rel` for a path pairforge recorded; one that leads outside `root` is refused."""
    path = root / rel
    if os.path.isabs(rel) or ".." in Path(rel).parts or not _resolved_within(path.parent, root):
        raise PairforgeError(f"{root}: the record names {rel!r}, outside the folder; nothing was deleted")
    return path


def _resolved_within(path: Path, root: Path) -> bool:
    try:
        real_root, real = root.resolve(), path.resolve()
    except (RuntimeError, OSError):  # a symbolic link loop: not provably inside
        return False
    return real == real_root or real_root in real.parents


def delete_recorded(root: Path, rels: Iterable[str]) -> int:
    """Delete the recorded files and folders `rels` (relative to `root`), then the folders they leave empty.
    Every one is checked first: when any cannot be deleted, nothing is. Returns how many entries went."""
    paths = [inside(root, rel) for rel in rels]
    present = [p for p in paths if p.is_symlink() or p.exists()]
    for path in present:
        _check_deletable(path, root)
    for path in present:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for folder in sorted({p.parent for p in present}, key=lambda p: len(p.parts), reverse=True):
        _remove_empty_up_to(folder, root)
    return len(present)


def _check_deletable(path: Path, root: Path) -> None:
    folders = [path.parent]
    if path.is_dir() and not path.is_symlink():
        folders += [Path(d) for d, _, _ in os.walk(path)]
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PairforgeError(
                f"cannot delete {path}: {folder} is read-only; nothing was deleted from {root}"
                " (make it writable, or choose another output)"
            )


def _remove_empty_up_to(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError as exc:  # not empty (or already gone): stop there
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise
            return
        folder = folder.parent


def remove_stale_temporaries(root: Path) -> int:
    """Delete the temporary files that earlier, killed pairforge processes left under `root`: only names of the
    pattern pairforge writes (`TEMP_NAME`), and only when their process is gone. Returns how many."""
    removed, folders = 0, [os.fspath(root)]
    while folders:  # entries one at a time: a folder of a million files is never listed whole
        try:
            entries = os.scandir(folders.pop())
        except OSError:  # unreadable: it holds nothing pairforge wrote
            continue
        with entries:
            for entry in entries:
                if is_folder(entry):
                    if not entry.is_symlink():
                        folders.append(entry.path)
                elif (found := TEMP_NAME.match(entry.name)) and not _alive(int(found["pid"] or found["pid2"])):
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
    return removed


def is_folder(entry: os.DirEntry) -> bool:
    """Whether a directory entry is a folder (following a symbolic link); a link loop is not."""
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link loop
        return False


def scratch_folder(parent: Path, prefix: str) -> Path:
    """A new folder `<parent>/<prefix><pid>` for this process's scratch work; the ones earlier, killed processes
    left under the same prefix (their process gone) are deleted first, and nothing else."""
    for old in parent.glob(f"{glob.escape(prefix)}*"):
        pid = old.name.removeprefix(prefix)
        if pid.isdigit() and old.is_dir() and not old.is_symlink() and not _alive(int(pid)):
            shutil.rmtree(old)
    folder = parent / f"{prefix}{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)  # this process's own, from an earlier call
    folder.mkdir(parents=True)
    return folder


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
