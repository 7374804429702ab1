"""The rules of pairing: keys, output names and deterministic splits (`pair_table.py` applies them to folders).

Files pair on their exact key: the name without its extension (and without `--a-suffix`/`--b-suffix`, or the
`--match` group), Unicode NFC-normalised, case-sensitive; the extension's case and kind do not matter (`a.JPG`
pairs with `a.png`). The filesystem-safe form of a key is only the output's file name (`safe_key`, and
`suffixed_names` where those clash): distinct keys always get distinct output names, even where the safe forms
(or their case) coincide.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pairforge.errors import UsageError
from pairforge.parsing import parse_list

SPLITS = ("train", "val", "test")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_key(name: str) -> str:
    """A filesystem-safe key: runs of spaces, separators and other unsafe characters become `_`."""
    key = _UNSAFE.sub("_", name).strip("._")
    return key or "_"


def exact_key(name: str) -> str:
    """The key files pair on: the name as written, NFC-normalised (macOS stores names decomposed)."""
    return name if name.isascii() else unicodedata.normalize("NFC", name)


def suffixed_names(clashing: list[str], taken: Callable[[str], bool]) -> dict[str, str]:
    """Output names for keys whose safe names clash (ignoring case, for case-insensitive filesystems):
    `<safe key>_<first 8 (or 16, or 64) hex digits of the key's sha256>`, with as few digits as make each name
    unique (ignoring case) and not `taken` by another key's name. Depends only on the keys (deterministic)."""
    result: dict[str, str] = {}
    for digits in (8, 16, 64):
        named: dict[str, list[str]] = defaultdict(list)
        for key in clashing:
            named[_suffixed(key, digits).casefold()].append(key)
        clashing = []
        for name, group in named.items():
            if len(group) == 1 and not taken(name):
                result[group[0]] = _suffixed(group[0], digits)
            else:
                clashing += group
        if not clashing:
            return result
    raise AssertionError(f"sha256 collision among keys {clashing}")


def _suffixed(key: str, digits: int) -> str:
    return f"{safe_key(key)}_{hashlib.sha256(key.encode()).hexdigest()[:digits]}"


@dataclass(frozen=True, slots=True)
class Pair:
    """One output pair: its key, split and the source file of each role, relative to that role's root."""

    key: str
    split: str
    sources: dict[str, str]


@dataclass(frozen=True)
class Rejection:
    """An input that did not become an output: paths per role (relative to the role's root) and why."""

    paths: dict[str, str]
    reason: str
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", self.reason.split(":")[0].split(" (")[0])


@dataclass(frozen=True)
class KeyRule:
    """How a file name becomes a key: an optional suffix stripped from the stem, or a regex `(?P<key>...)`."""

    suffix: str = ""
    match: re.Pattern | None = None

    @classmethod
    def build(cls, suffix: str = "", match: str | None = None, flag: str = "--match") -> KeyRule:
        pattern = None
        if match:
            try:
                pattern = re.compile(match)
            except re.error as exc:
                raise UsageError(f"{flag} {match!r} is not a valid regex: {exc}") from None
            if "key" not in pattern.groupindex:
                raise UsageError(f"{flag} {match!r} needs a named group (?P<key>...)")
        return cls(suffix, pattern)

    def key_of(self, name: str) -> str | None:
        """The exact key of file `name` (see the module docstring), or None when `--match` does not match it."""
        name = exact_key(name)
        if self.match is not None:
            found = self.match.search(name)
            return found.group("key") if found else None
        stem = os.path.splitext(name)[0]
        if self.suffix and stem.endswith(self.suffix) and len(stem) > len(self.suffix):
            stem = stem[: -len(self.suffix)]
        return stem


def has_split_folders(root: Path) -> bool:
    return any((root / s).is_dir() for s in SPLITS)


@dataclass(frozen=True)
class SplitSpec:
    """`--split`: three ratios (`0.8,0.1,0.1`) or three counts (`170,8,10`) for train, val, test."""

    values: tuple[float, float, float]
    counts: bool

    @classmethod
    def parse(cls, text: str) -> SplitSpec:
        values = parse_list(text, "--split", float, length=3)
        if min(values) < 0:
            raise UsageError(f"--split {text!r}: values must not be negative")
        counts = all("." not in p for p in text.split(",")) and sum(values) > 1
        if not counts and abs(sum(values) - 1.0) > 1e-6:
            raise UsageError(f"--split {text!r}: ratios must add up to 1 (or give whole counts, e.g. 170,8,10)")
        return cls((values[0], values[1], values[2]), counts)

    def __str__(self) -> str:
        return ",".join(f"{v:g}" for v in self.values)

    def sizes(self, n: int) -> list[int]:
        """How many of `n` keys go to train, val and test (with counts, their sum may be less than n)."""
        if self.counts:
            return [int(v) for v in self.values]
        n_train = round(n * self.values[0])
        n_val = min(n - n_train, round(n * self.values[1]))
        return [n_train, n_val, n - n_train - n_val]


def hash_order(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(keys: list[str], spec: SplitSpec, seed: int) -> dict[str, str | None]:
    """Deterministic split per key: keys ordered by sha256(seed:key), then cut by counts or ratios.

    The same keys and seed always give the same assignment. With counts, keys beyond the total map to None.
    """
    ordered = sorted(keys, key=lambda k: hash_order(k, seed))
    sizes = spec.sizes(len(ordered))
    result: dict[str, str | None] = {}
    start = 0
    for split, size in zip(SPLITS, sizes, strict=True):
        for key in ordered[start : start + size]:
            result[key] = split
        start += size
    for key in ordered[start:]:
        result[key] = None
    return result


def key_rng(key: str, seed: int) -> np.random.Generator:
    """A random generator seeded per key, so random crops are identical on every re-run."""
    return np.random.default_rng(int(hash_order(key, seed)[:16], 16))
