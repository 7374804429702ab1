"""The `webdataset` layout's shards: workers encode each pair's members, the parent writes them here.

The runner hands pairs over in (split, key) order (the executors keep the pairs' order), so the same input and
options give the same shards, byte for byte (fixed tar metadata, mtime 0). Each split gets its own shards,
`<split>-NNNNNN.tar`, started anew when one holds `--shard-size` bytes of members, written with the `webdataset`
library's ShardWriter into a hidden folder and moved into place when the run ends (an interrupted run never
leaves a half-written shard). Shards cannot be appended to in key order, so a re-run rebuilds them all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

from pairforge.prep.manifest import ShardRecord
from pairforge.prep.writers import WebDatasetLayout, shard_key

TMP_FOLDER = ".webdataset.tmp"
SHARD_NAME = re.compile(r"^(?P<split>.+)-\d{6}\.tar$")


class ShardSink:
    """Writes each finished pair's members into the shards of its split; pairs come in (split, key) order."""

    def __init__(self, out: Path, layout: WebDatasetLayout) -> None:
        from webdataset import ShardWriter  # imported here: only `--layout webdataset` needs the library

        self.writer_class = ShardWriter
        self.out, self.shard_size = out, layout.shard_size
        self.tmp = out / TMP_FOLDER
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.writer = None
        self.split: str | None = None
        self.counts: Counter[str] = Counter()
        self.shards: list[ShardRecord] = []

    def add(self, item: dict, members: dict[str, bytes]) -> None:
        """Write a built pair (an `ItemRecord` as a dict); its webdataset outputs' paths get their shard's name."""
        split, key = item["split"], item["key"]
        if split != self.split:
            self._finish_writer()
            self.split = split
            pattern = str(self.tmp / f"{split}-%06d.tar")
            self.writer = self.writer_class(
                pattern, maxsize=self.shard_size, maxcount=2**62, verbose=0, post=self._done, encoder=False, mtime=0
            )
        base = shard_key(key)
        record = {"key": key, "split": split, "sources": item["sources"]}
        sample = {"__key__": base, "json": json.dumps(record, sort_keys=True).encode()}
        sample |= {name.removeprefix(f"{base}."): data for name, data in members.items()}
        self.writer.write(sample)
        shard = Path(self.writer.fname).name
        self.counts[shard] += 1
        for output in item["outputs"]:
            if output["layout"] == WebDatasetLayout.name:
                output["path"] = f"{shard}/{output['path']}"

    def _done(self, fname: str) -> None:
        path = Path(fname)
        with path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        split = SHARD_NAME.match(path.name)["split"]
        self.shards.append(ShardRecord(path=path.name, split=split, count=self.counts[path.name], sha256=digest))

    def _finish_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> list[ShardRecord]:
        """Finish the last shard, move every shard into place, delete shards of earlier runs; the shard list."""
        self._finish_writer()
        made = {s.path for s in self.shards}
        for old in self.out.iterdir():
            if SHARD_NAME.match(old.name) and old.name not in made:
                old.unlink()
        for shard in self.shards:
            os.replace(self.tmp / shard.path, self.out / shard.path)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.shards
