"""`manifest.json`: the record of what a command made, from what, and what it rejected (CONVENTIONS §2)."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pairforge import __version__
from pairforge.errors import PairforgeError
from pairforge.prep.imageio import atomic_file

SCHEMA = 1
MANIFEST_NAME = "manifest.json"


class OutputRecord(BaseModel):
    layout: str
    path: str
    sha256: str
    width: int
    height: int


class ItemRecord(BaseModel):
    key: str
    split: str
    sources: dict[str, str]
    outputs: list[OutputRecord]


class RejectedRecord(BaseModel):
    paths: dict[str, str]
    reason: str
    kind: str


class ShardRecord(BaseModel):
    """One tar shard of the `webdataset` layout: its file, split, number of samples and sha256."""

    path: str
    split: str
    count: int
    sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_version: int = Field(SCHEMA, alias="schema")
    tool: dict[str, str] = Field(default_factory=lambda: {"name": "pairforge", "version": __version__})
    command: list[str]
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    sources: dict[str, str]
    options: dict
    layouts: list[str]
    counts: dict[str, int] = Field(default_factory=dict)
    items: list[ItemRecord] = Field(default_factory=list)
    rejected: list[RejectedRecord] = Field(default_factory=list)
    shards: list[ShardRecord] = Field(default_factory=list)
    incomplete: bool = False
    """Written at the start of a run and cleared at its end: True means the run was interrupted (its files so far
    are intact; running the same command again finishes the dataset). Left out of the file when False."""

    def finalize(self) -> Manifest:
        """Sort items and rejections deterministically and recount the splits."""
        self.items.sort(key=lambda it: (it.split, it.key))
        self.rejected.sort(key=lambda r: _rejected_order(r.paths, r.reason))
        self.counts = dict(sorted(Counter(it.split for it in self.items).items()))
        self.shards.sort(key=lambda s: s.path)
        return self

    def rejected_by_kind(self) -> dict[str, int]:
        return dict(Counter(r.kind for r in self.rejected).most_common())


def _rejected_order(paths: dict[str, str], reason: str) -> tuple:
    return sorted(paths.items()), reason


@dataclass
class ManifestBuilder:
    """The manifest of a running job. Items come in (split, key) order and go straight to a temporary file as
    lines of JSON, so memory does not grow with the number of pairs; `write` streams them into manifest.json.
    Rejections (usually few) are kept as their JSON lines and sorted at the end."""

    header: Manifest
    """Everything but the items and rejections."""
    counts: Counter[str] = field(default_factory=Counter)
    rejected_by_kind: Counter[str] = field(default_factory=Counter)
    _spool: TextIO | None = None
    _last: tuple[str, str] = ("", "")
    _rejected: list[tuple[tuple, str]] = field(default_factory=list)

    def add_item(self, record: dict) -> None:
        """One output pair, shaped as `ItemRecord`, after every pair that sorts before it."""
        order = (record["split"], record["key"])
        if order < self._last:
            raise ValueError(f"manifest items out of order: {order} after {self._last}")
        self._last = order
        if self._spool is None:  # an anonymous file: gone when closed, or when the process ends
            self._spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (open until write)
        self._spool.write(_line(record) + "\n")
        self.counts[record["split"]] += 1

    def add_rejected(self, record: dict) -> None:
        """One input that did not become an output, shaped as `RejectedRecord`."""
        record = {"paths": record["paths"], "reason": record["reason"], "kind": record["kind"]}
        self._rejected.append((_rejected_order(record["paths"], record["reason"]), _line(record)))
        self.rejected_by_kind[record["kind"]] += 1

    @property
    def rejected(self) -> int:
        return len(self._rejected)

    def write_started(self, root: Path) -> None:
        """Mark `root` as a dataset being written (`incomplete`), with this run's options, before any pair is."""
        _write(root, self.header.model_copy(update={"incomplete": True}), [], [])

    def write(self, root: Path) -> None:
        """Write manifest.json atomically: items in (split, key) order, rejections by path, one per line."""
        self._rejected.sort(key=lambda entry: entry[0])
        self.header.counts = dict(sorted(self.counts.items()))
        self.header.shards.sort(key=lambda s: s.path)
        items: Iterable[str] = []
        if self._spool is not None:
            self._spool.seek(0)
            items = (line.rstrip("\n") for line in self._spool)
        _write(root, self.header, items, (line for _, line in self._rejected))
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def _line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def manifest_path(root: Path) -> Path:
    return root / MANIFEST_NAME


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Write a whole `Manifest` (built in memory) as `ManifestBuilder.write` does."""
    manifest.finalize()
    items = (_line(item.model_dump()) for item in manifest.items)
    rejected = (_line(record.model_dump()) for record in manifest.rejected)
    _write(root, manifest, items, rejected)


def _write(root: Path, header: Manifest, items: Iterable[str], rejected: Iterable[str]) -> None:
    """The header's fields pretty-printed, then items, rejections and shards one record per line. The C JSON
    encoder does each record (Python's own encoder runs whenever `indent` is set, 5x slower), and the whole text
    is never held in memory."""
    fields = header.model_dump(by_alias=True, exclude={"items", "rejected", "shards"})
    if not fields["incomplete"]:
        del fields["incomplete"]
    with atomic_file(manifest_path(root), "w") as fh:
        fh.write("{\n")
        for name, value in fields.items():
            fh.write(f' "{name}": {json.dumps(value, ensure_ascii=False)},\n')
        _write_list(fh, "items", items)
        fh.write(",\n")
        _write_list(fh, "rejected", rejected)
        fh.write(",\n")
        _write_list(fh, "shards", (_line(shard.model_dump()) for shard in header.shards))
        fh.write("\n}\n")


def _write_list(fh: TextIO, name: str, lines: Iterable[str]) -> None:
    fh.write(f' "{name}": [')
    separator = "\n  "
    for line in lines:
        fh.write(separator + line)
        separator = ",\n  "
    fh.write("\n ]" if separator != "\n  " else "]")


def read_manifest(root: Path) -> Manifest:
    path = manifest_path(root)
    if not path.is_file():
        raise PairforgeError(f"{path}: no manifest.json; is {root} a pairforge dataset?")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PairforgeError(f"{path}: not a valid manifest ({where}: {first['msg']})") from None
