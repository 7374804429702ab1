"""`manifest.json`: the record of what a command made, from what, and what it rejected (CONVENTIONS §2)."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

from pairforge import __version__
from pairforge.errors import PairforgeError
from pairforge.manifest_lines import MANIFEST_NAME, ManifestLines
from pairforge.prep.imageio import atomic_file

SCHEMA = 1


RECORD_CONFIG = ConfigDict(cache_strings="keys")
"""Records are parsed one at a time: caching their values (paths, hashes) would only hold memory."""


class OutputRecord(BaseModel):
    model_config = RECORD_CONFIG

    layout: str
    path: str
    sha256: str
    width: int
    height: int
    size: int | None = None
    """Bytes on disk when written (None for shard members and manifests written before it was recorded)."""
    mtime_ns: int | None = None
    """The file's modification time when written: with `size`, a re-run's cheap check that it is unchanged."""


class ItemRecord(BaseModel):
    model_config = RECORD_CONFIG

    key: str
    split: str
    sources: dict[str, str]
    outputs: list[OutputRecord]


class RejectedRecord(BaseModel):
    model_config = RECORD_CONFIG

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

    def add_item(self, record: dict, line: str | None = None) -> None:
        """One output pair, shaped as `ItemRecord` (or given as its manifest `line`, which then holds all of it
        beyond `split` and `key`), after every pair that sorts before it."""
        order = (record["split"], record["key"])
        if order < self._last:
            raise ValueError(f"manifest items out of order: {order} after {self._last}")
        self._last = order
        if self._spool is None:  # an anonymous file: gone when closed, or when the process ends
            self._spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (open until write)
        self._spool.write((line or _line(record)) + "\n")
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

    def write_interrupted(self, root: Path, later: Iterable[ItemRecord]) -> None:
        """Write manifest.json for a run that stops before its end (`incomplete`): the items done so far, then
        the items of `later` (the previous manifest's) that sort after them, so that a re-run still knows every
        file that was written and checks it rather than trusting or rebuilding it."""
        for item in later:
            if (item.split, item.key) > self._last:
                self.add_item(item.model_dump())
        self.header.incomplete = True
        self.write(root)


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


class ManifestReader:
    """A dataset's manifest.json, read as it was written: the header (every field but the items and rejections,
    shards included) validated at once, items and rejections validated one record at a time as they are read."""

    def __init__(self, root: Path, name: str = MANIFEST_NAME, header_only: bool = False):
        """`header_only`: read the fields before the items and nothing else (no shards, no records)."""
        self.path = root / name
        if not self.path.is_file():
            raise PairforgeError(f"{self.path}: no manifest.json; is {root} a pairforge dataset?")
        try:
            self._lines = ManifestLines(self.path, header_only)
        except (OSError, ValueError) as exc:
            raise PairforgeError(f"{self.path}: not a valid manifest ({exc})") from None
        shards = list(self._lines.records("shards"))
        self.header: Manifest = self._validated(Manifest, {**self._lines.header, "shards": shards}, "header")

    @property
    def item_count(self) -> int:
        return self._lines.count("items")

    def items(self) -> Iterator[ItemRecord]:
        """The items in file order ((split, key) order for manifests pairforge wrote), one at a time."""
        return (item for item, _ in self.item_lines())

    def item_lines(self) -> Iterator[tuple[ItemRecord, str]]:
        """Each item with its line of JSON."""
        for number, line in enumerate(self._lines.lines("items")):
            yield self._validated(ItemRecord, line, f"items.{number}"), line.decode()

    def keyed_item_lines(self) -> Iterator[tuple[str, str, str]]:
        """Each item's split, key and line of JSON, the rest of the record to be validated by whoever uses it
        (`item_of_line`): a resumed run merges these with its pairs and validates each record where it checks it."""
        for number, line in enumerate(self._lines.lines("items")):
            try:
                record = from_json(line)
                split, key = record["split"], record["key"]
            except (ValueError, KeyError, TypeError):
                split = key = None
            if not (isinstance(split, str) and isinstance(key, str)):
                self._validated(ItemRecord, line, f"items.{number}")  # says what is wrong
                raise PairforgeError(f"{self.path}: not a valid manifest (items.{number})")
            yield split, key, line.decode()

    def rejected(self) -> Iterator[RejectedRecord]:
        for number, line in enumerate(self._lines.lines("rejected")):
            yield self._validated(RejectedRecord, line, f"rejected.{number}")

    def _validated(self, model: type[BaseModel], data: bytes | dict, where: str):
        try:
            return model.model_validate_json(data) if isinstance(data, bytes) else model.model_validate(data)
        except ValidationError as exc:
            inside, message = _first_error(exc)
            raise PairforgeError(
                f"{self.path}: not a valid manifest ({where}{'.' if inside else ''}{inside}: {message})"
            ) from None


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """Where in the record (dotted) the first validation error is, and its message."""
    first = exc.errors()[0]
    return ".".join(str(p) for p in first["loc"]), first["msg"]


class InvalidRecord(ValueError):
    """A manifest line that is not a valid record (the message says where and why)."""


def item_of_line(line: str) -> ItemRecord:
    """The item record of a line of `ManifestReader.keyed_item_lines`, validated; InvalidRecord when it is not."""
    try:
        return ItemRecord.model_validate_json(line)
    except ValidationError as exc:
        inside, message = _first_error(exc)
        raise InvalidRecord(f"{inside}: {message}") from None


def read_manifest(root: Path) -> Manifest:
    """The whole manifest in memory, items and rejections included: for small ones only (a fetched dataset's);
    everything that may read a large dataset uses `ManifestReader`."""
    reader = ManifestReader(root)
    return reader.header.model_copy(update={"items": list(reader.items()), "rejected": list(reader.rejected())})
