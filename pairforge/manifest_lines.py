"""Reading a dataset's manifest.json as pairforge writes it, one record at a time.

The writer (`prep/manifest.py`) puts each header field on a line of its own (` "name": <json>,`) and each list
(`items`, `rejected`, `shards`) one record per line (`  {...},`). `ManifestLines` scans the file once, keeping the
header fields and where each list starts, then reads a list's records lazily: memory does not grow with the
number of pairs. A manifest.json in any other JSON form (rewritten by another tool) is read whole instead.
Shared by `prep` and `train`, which never import each other; `prep` validates each record with its schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

MANIFEST_NAME = "manifest.json"
RECORD_LISTS = ("items", "rejected", "shards")
LIST_END = b" ]"


class _OtherForm(Exception):
    """The file is not in the writer's line form."""


class ManifestLines:
    """The header fields of a manifest file (`header`) and its lists, read one record per line."""

    def __init__(self, path: Path, header_only: bool = False):
        self.path = path
        self.header: dict = {}
        self._lists: dict[str, tuple[int, int]] = {}  # name -> (offset of its first record, records)
        self._whole: dict | None = None
        try:
            self._scan(header_only)
        except _OtherForm:
            with open(path, "rb") as fh:
                self._whole = json.load(fh)  # ValueError when it is not JSON at all
            if not isinstance(self._whole, dict):
                raise ValueError("not a JSON object") from None
            self.header = {k: v for k, v in self._whole.items() if k not in RECORD_LISTS}

    def _scan(self, header_only: bool) -> None:
        with open(self.path, "rb") as fh:
            first = fh.readline()
            if first.strip() != b"{":
                raise _OtherForm
            position, current, count, start = len(first), None, 0, 0
            for line in fh:
                position += len(line)
                if current is not None:
                    if line.lstrip().startswith(b"{"):
                        count += 1
                    elif line.rstrip(b",\r\n") == LIST_END:
                        self._lists[current], current = (start, count), None
                    else:
                        raise _OtherForm
                    continue
                text = line.rstrip(b"\r\n")
                if text == b"}":
                    return
                if not text.startswith(b' "'):
                    raise _OtherForm
                if text.endswith(b": ["):
                    if header_only:
                        return
                    current, count, start = json.loads(text[1:-3]), 0, position
                    continue
                try:
                    field = json.loads(b"{" + text.rstrip(b",") + b"}")
                except ValueError:
                    raise _OtherForm from None
                for name, value in field.items():
                    if name in RECORD_LISTS:  # an empty one, written as `"name": []`
                        self._lists[name] = (position, 0)
                    else:
                        self.header[name] = value
        if not header_only:
            raise _OtherForm  # no closing brace: not what the writer writes

    def count(self, name: str) -> int:
        """How many records list `name` holds (0 when absent)."""
        if self._whole is not None:
            return len(self._whole.get(name, []))
        return self._lists.get(name, (0, 0))[1]

    def lines(self, name: str) -> Iterator[bytes]:
        """The records of list `name`, each as the bytes of one JSON object, in file order."""
        if self._whole is not None:
            for record in self._whole.get(name, []):
                yield json.dumps(record).encode()
            return
        start, count = self._lists.get(name, (0, 0))
        if not count:
            return
        with open(self.path, "rb") as fh:
            fh.seek(start)
            for _, line in zip(range(count), fh, strict=False):
                yield line.strip().removesuffix(b",")

    def records(self, name: str) -> Iterator[dict]:
        """The records of list `name` as dicts, one at a time."""
        return (json.loads(line) for line in self.lines(name))


def manifest_header(root: Path | str | None) -> dict | None:
    """The header fields (options, sources, counts, ...) of the manifest in dataset folder `root`, read without its
    records; None when there is none or it cannot be read."""
    path = Path(root or ".") / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return ManifestLines(path, header_only=True).header
    except (OSError, ValueError):
        return None
