"""`manifest.json`: the record of what a command made, from what, and what it rejected (CONVENTIONS §2)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pairforge import __version__
from pairforge.errors import PairforgeError
from pairforge.prep.imageio import write_atomic

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

    def finalize(self) -> Manifest:
        """Sort items and rejections deterministically and recount the splits."""
        self.items.sort(key=lambda it: (it.split, it.key))
        self.rejected.sort(key=lambda r: (sorted(r.paths.items()), r.reason))
        self.counts = dict(sorted(Counter(it.split for it in self.items).items()))
        self.shards.sort(key=lambda s: s.path)
        return self

    def rejected_by_kind(self) -> dict[str, int]:
        return dict(Counter(r.kind for r in self.rejected).most_common())


def manifest_path(root: Path) -> Path:
    return root / MANIFEST_NAME


def write_manifest(root: Path, manifest: Manifest) -> None:
    text = json.dumps(manifest.finalize().model_dump(by_alias=True), indent=1, ensure_ascii=False)
    write_atomic(manifest_path(root), (text + "\n").encode())


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
