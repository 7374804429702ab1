"""Runs a job's pairs in parallel, resumes, and fills the manifest: every input is an item or a rejection.

A job is data: a `PairTable` (the pairs, read back in (split, key) order, and the inputs rejected while
pairing), a picklable *builder* that turns one pair into `PairImages` (raising `ImageRejected` for bad input),
and the layouts to write. Workers build, encode, hash and write atomically; the parent counts, shows progress
and, for the `webdataset` layout, writes the members the workers encoded into shards in (split, key) order
(`shards.py`).
"""

from __future__ import annotations

import gc
import itertools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pairforge.errors import Interrupted, PairforgeError, UsageError
from pairforge.prep.executors import LocalPool, RayCluster, run_sharded, shards_of, tune_worker_process
from pairforge.prep.imageio import ImageRejected, encode, image_size, sha256_bytes, sha256_file, write_atomic
from pairforge.prep.manifest import (
    InvalidRecord,
    ItemRecord,
    Manifest,
    ManifestBuilder,
    ManifestReader,
    OutputRecord,
    item_of_line,
    manifest_path,
)
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import Pair
from pairforge.prep.progress import count_columns, progress_bar
from pairforge.prep.shards import ShardSink
from pairforge.prep.writers import Formats, Layout, PairImages, WebDatasetLayout
from pairforge.resources import ResourceExhausted, resource_cause
from pairforge.safety import check_apart, delete_recorded, remove_stale_temporaries

Builder = Callable[[Pair], PairImages]


@dataclass
class Job:
    """Everything one command run needs: where to write, what to write, and how to build each pair."""

    out: Path
    sources: dict[str, Path]
    pairs: PairTable
    """The pairs and the inputs that did not pair (`PairTable.of(pairs, rejected)` for a source's own lists)."""
    builder: Builder
    layouts: list[Layout]
    formats: Formats
    options: dict
    command: list[str]


@dataclass
class RunSettings:
    """How to run, never what to make: these do not enter the manifest's options."""

    workers: int = 0  # 0 = all cores
    overwrite: bool = False
    dry_run: bool = False
    progress: bool = True
    executor: str = "local"  # or "ray"
    ray_address: str | None = None
    verify: bool = False
    """On resume, re-hash every kept file (otherwise a file with its recorded size and mtime is taken as intact)."""


@dataclass
class RunResult:
    written: int = 0
    rebuilt: int = 0
    """Of the written pairs, those whose files the previous run had written but were missing or changed."""
    skipped: int = 0
    rejected: int = 0
    rejected_by_kind: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """Pairs per split in the dataset."""
    seconds: float = 0.0


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_job(job: Job, settings: RunSettings) -> RunResult:
    """Check the output folder, build every pair (in parallel), write the manifest, return the counts."""
    _check_output(job, settings.overwrite)
    header = Manifest(
        command=job.command,
        sources={role: str(path) for role, path in job.sources.items()},
        options=job.options,
        layouts=[layout.name for layout in job.layouts],
    )
    manifest = ManifestBuilder(header)
    for rejection in job.pairs.rejections():
        manifest.add_rejected({"paths": rejection.paths, "reason": rejection.reason, "kind": rejection.kind})
    result = RunResult()
    if settings.dry_run:
        return _counted(result, manifest)
    previous = _keep_previous(job.out)
    stale = _previous_outputs(job.out, previous) if settings.overwrite else set()
    if settings.overwrite or any(layout.streamed for layout in job.layouts):  # shards are rebuilt on every run
        previous = None
    job.out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(job.out)
    manifest.write_started(job.out)
    job.pairs.save(job.out)  # for the next run, which takes it while the input folders stay as they are
    start = time.perf_counter()
    executor = _executor(job, settings)
    streamed = next((layout for layout in job.layouts if layout.streamed), None)
    sink = ShardSink(job.out, streamed) if streamed else None
    pairs = job.pairs  # in (split, key) order: the manifest's, and the shards'
    interrupted, exhausted = False, None
    try:
        with progress_bar(settings.progress, "pairs", count_columns("pairs"), len(pairs)) as update, rare_collections():
            for status, record in executor.results(_with_previous(pairs, previous)):
                update(advance=1)
                if status == "invalid":
                    raise PairforgeError(f"{previous.path}: not a valid manifest ({record['reason']})")
                if status == "rejected":
                    manifest.add_rejected(record)
                    continue
                members = record.pop("members", None)
                if sink:
                    sink.add(record, members or {})
                manifest.add_item(record, record.pop("line", None))
                if stale:  # --overwrite: outputs this run makes again are not stale
                    stale.difference_update(output["path"] for output in record["outputs"])
                result.written += status in ("written", "rebuilt")
                result.rebuilt += status == "rebuilt"
                result.skipped += status == "skipped"
        if sink:
            header.shards = sink.close()
    except KeyboardInterrupt:
        interrupted = True
    except ResourceExhausted as exc:
        exhausted = exc
    finally:
        executor.close()  # on Ctrl-C the workers finish the pairs they hold: counted after them
    if interrupted:
        _record_stop(job, manifest, previous)
        raise Interrupted(f"interrupted: {_kept(job, pairs)}; run the same command again to finish")
    if exhausted is not None:
        _record_stop(job, manifest, previous, best_effort=True)  # on a full disk even this may not fit
        raise PairforgeError(
            f"{exhausted}: stopped, {_kept(job, pairs)}; {exhausted.remedy()}, then run the same command again to"
            " finish"
        )
    result.seconds = time.perf_counter() - start
    delete_recorded(job.out, stale)
    manifest.write(job.out)
    (job.out / PREVIOUS_NAME).unlink(missing_ok=True)
    return _counted(result, manifest)


GC_YOUNGEST = 20_000
"""Allocations between collections of the youngest generation while pairs stream through (Python's default is
700): each pair makes a few dozen short-lived objects, and with the default the collector took about a third of a
no-op re-run of 1M pairs (31 s; 25 s with this, 24 s with no collection at all)."""


@contextmanager
def rare_collections() -> Iterator[None]:
    """Python's garbage collector runs less often (`GC_YOUNGEST`) inside; its settings are restored after."""
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_YOUNGEST, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _record_stop(
    job: Job, manifest: ManifestBuilder, previous: ManifestReader | None, best_effort: bool = False
) -> None:
    """A run that stops early records the files written so far (`incomplete`), so that the re-run checks them
    instead of rebuilding them. `best_effort`: where the disk is full this may fail too; then the re-run rebuilds
    what no manifest records, and nothing is lost."""
    try:
        manifest.write_interrupted(job.out, previous.items() if previous is not None else ())
    except OSError:
        if not best_effort:
            raise
        return
    (job.out / PREVIOUS_NAME).unlink(missing_ok=True)


CHUNK = 2048
"""Pairs looked at together: the parent keeps those whose files are intact, the workers build the rest."""
PREVIOUS_NAME = ".manifest.previous.json"
"""Where a run keeps the manifest of the last finished run while it writes its own (hidden: not a dataset file)."""


def _keep_previous(out: Path) -> ManifestReader | None:
    """The last manifest that records the files written, moved aside (PREVIOUS_NAME) so that it stays readable
    while this run writes manifest.json. A run stopped by Ctrl-C records its files (`write_interrupted`); one
    killed outright leaves manifest.json without items, and the manifest it had moved aside still counts."""
    current, kept = manifest_path(out), out / PREVIOUS_NAME
    finished = current.is_file() and not ManifestReader(out, header_only=True).header.incomplete
    if finished or (current.is_file() and ManifestReader(out).item_count):
        os.replace(current, kept)
    return ManifestReader(out, PREVIOUS_NAME) if kept.is_file() else None


Task = tuple[Pair, str | None]
"""A pair for the workers, with its line in the last finished run's manifest (None: that run did not make it)."""


def _with_previous(pairs: PairTable, previous: ManifestReader | None) -> Iterator[Task]:
    """Each pair (in (split, key) order) with its previous manifest line: a merge with the previous manifest's
    items, which are in the same order, read one at a time."""
    records = previous.keyed_item_lines() if previous is not None else iter(())
    record = next(records, None)
    for pair in pairs:
        order = (pair.split, pair.key)
        while record is not None and record[:2] < order:
            record = next(records, None)
        if record is not None and record[:2] == order:
            yield pair, record[2]
        else:
            yield pair, None


@dataclass(frozen=True)
class Kept:
    """Decides whether a pair's files from the previous run can stay: every file the pair would write is there,
    at the path recorded, with the recorded size, and either the recorded mtime or (where the mtime changed, and
    for every file under --verify) the recorded sha256."""

    out: str
    layouts: list[Layout]
    formats: Formats
    verify: bool

    def intact(self, pair: Pair, record: ItemRecord, line: str, hashing: bool = True) -> tuple[str, dict] | None:
        """The pair's "skipped" result when its files are intact, else None (also, without `hashing`, when a file
        would need hashing to tell). When nothing changed, the previous manifest line is kept as it is (`line`)."""
        stats = self._stats(pair, record.outputs, hashing)
        if stats is None:
            return None
        unchanged = all((o.size, o.mtime_ns) == stat for o, stat in zip(record.outputs, stats, strict=True))
        if unchanged and record.sources == pair.sources:
            return "skipped", {"key": pair.key, "split": pair.split, "line": line}
        return "skipped", _item(pair, _restated(record.outputs, stats))

    def _stats(self, pair: Pair, previous: list[OutputRecord], hashing: bool) -> list[tuple[int, int]] | None:
        """The (size, mtime_ns) of each file when all are intact, else None."""
        planned = [
            rel for layout in self.layouts for rel, _, _ in layout.files(pair.key, pair.split, None, self.formats)
        ]
        if len(planned) != len(previous):
            return None
        stats = []
        for output, rel in zip(previous, planned, strict=True):
            if output.path != rel:
                return None
            path = f"{self.out}/{rel}"
            try:
                stat = os.stat(path)
            except OSError:
                return None
            if output.size is not None and stat.st_size != output.size:
                return None
            unchanged = stat.st_mtime_ns == output.mtime_ns and output.size is not None
            if (self.verify or not unchanged) and (not hashing or sha256_file(path) != output.sha256):
                return None
            stats.append((stat.st_size, stat.st_mtime_ns))
        return stats


def _restated(outputs: list[OutputRecord], stats: list[tuple[int, int]]) -> list[dict]:
    restated = zip(outputs, stats, strict=True)
    return [output.model_dump() | {"size": size, "mtime_ns": mtime} for output, (size, mtime) in restated]


def _task_sources(task: Task) -> dict[str, str]:
    return task[0].sources


def _item(pair: Pair, outputs: list[dict]) -> dict:
    return {"key": pair.key, "split": pair.split, "sources": pair.sources, "outputs": outputs}


def _counted(result: RunResult, manifest: ManifestBuilder) -> RunResult:
    result.rejected, result.rejected_by_kind = manifest.rejected, dict(manifest.rejected_by_kind.most_common())
    result.counts = dict(sorted(manifest.counts.items()))
    return result


def _kept(job: Job, pairs: PairTable) -> str:
    """What an interrupted run leaves: the pairs whose files are all on disk (the workers write them)."""
    if any(layout.streamed for layout in job.layouts):
        return f"the webdataset shards of {job.out} are rebuilt on the next run"
    done = sum(
        all(
            os.path.isfile(job.out / rel)
            for layout in job.layouts
            for _, rel, _, _ in _tagged(layout, p, None, job.formats)
        )
        for p in pairs
    )
    return f"{done} of {len(pairs)} pairs are in {job.out}"


def _check_output(job: Job, overwrite: bool) -> None:
    """The output must be a folder apart from the inputs, empty or a pairforge dataset made with these options
    (or, with --overwrite, any pairforge dataset: pairforge never deletes in a folder it did not write)."""
    check_apart(job.out, job.sources)
    out = job.out.resolve()
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"output {job.out} is a file, not a folder; give a folder for the dataset")
    if manifest_path(out).is_file():
        if overwrite:
            return
        previous = ManifestReader(out, header_only=True).header
        if previous.options != job.options or previous.layouts != [lay.name for lay in job.layouts]:
            changed = sorted(
                k for k in previous.options.keys() | job.options.keys() if previous.options.get(k) != job.options.get(k)
            ) or ["--layout"]
            raise UsageError(
                f"{out} was made with other options ({', '.join(changed)}); "
                "use --overwrite to rebuild it or choose another output folder"
            )
    elif any(out.iterdir()):
        raise UsageError(
            f"{out} is not empty and has no manifest.json: pairforge did not write it and will not write into it; "
            "choose a new or empty folder"
        )


def _previous_outputs(out: Path, previous: ManifestReader | None) -> set[str]:
    if previous is None:
        return set()
    return {o.path for it in previous.items() for o in it.outputs if o.layout != WebDatasetLayout.name}


class _InProcess:
    """Pairs built in this process, one after another (--workers 1, tiny jobs, debugging)."""

    def __init__(self, state: tuple):
        _init_worker(state)

    def results(self, tasks: Iterator[Task]) -> Iterator[tuple[str, dict]]:
        return map(_process, tasks)

    def close(self) -> None:
        pass


class _Sharded:
    """A local pool or a Ray cluster running shards of pairs (see executors.py). Pairs whose files pass the cheap
    check (size and mtime as recorded) are kept here, which costs less than a round trip to a worker; the workers
    check the others (by sha256) and build what is not intact."""

    def __init__(self, backend, workers: int, count: int, kept: Kept):
        self.backend, self.workers, self.count, self.kept = backend, workers, count, kept

    def results(self, tasks: Iterator[Task]) -> Iterator[tuple[str, dict]]:
        """Every pair's result, in order, a chunk at a time."""
        while chunk := list(itertools.islice(tasks, CHUNK)):
            ready = [_done_before(task, self.kept, hashing=False) for task in chunk]
            todo = (task for task, done in zip(chunk, ready, strict=True) if done is None)
            built = run_sharded(self.backend, shards_of(todo, self.count, self.workers), _task_sources)
            for done in ready:
                yield done if done is not None else next(built)

    def close(self) -> None:
        self.backend.close()


def _executor(job: Job, settings: RunSettings):
    """Start the workers that will build the job's pairs."""
    workers = min(settings.workers or default_workers(), max(1, len(job.pairs)))
    kept = Kept(os.fspath(job.out), job.layouts, job.formats, settings.verify)
    state = (job.builder, kept)
    if settings.executor == "ray":
        backend = RayCluster(_run_shard_with_state, state, settings.ray_address)
        return _Sharded(backend, workers, len(job.pairs), kept)
    if workers <= 1 or len(job.pairs) < 4:
        return _InProcess(state)
    return _Sharded(LocalPool(_run_shard, _init_worker, state, workers), workers, len(job.pairs), kept)


_STATE: tuple | None = None


def _init_worker(state: tuple) -> None:
    global _STATE
    _STATE = state
    tune_worker_process()


def _run_shard(tasks: list[Task]) -> list[tuple[str, dict]]:
    return [_process(task) for task in tasks]


def _run_shard_with_state(state: tuple, tasks: list[Task]) -> list[tuple[str, dict]]:
    _init_worker(state)
    return _run_shard(tasks)


def _process(task: Task) -> tuple[str, dict]:
    """Keep a pair's files from the previous run when they are intact (`Kept`), else build the pair and write its
    files ("rebuilt" when the previous run had written them); never raises for bad input. A previous manifest
    line that is not a valid record is reported ("invalid"): the run stops, as on any manifest it cannot read.

    Returns plain dicts (cheap to send between processes) shaped as `ItemRecord` or `RejectedRecord`."""
    pair, line = task
    builder, kept = _STATE
    if (done := _done_before(task, kept)) is not None:
        return done
    out, layouts, formats = kept.out, kept.layouts, kept.formats
    members: dict[str, bytes] = {}
    try:
        images = builder(pair)
        outputs = []
        for layout in layouts:
            for name, rel, payload, fmt in _tagged(layout, pair, images, formats):
                data = payload if isinstance(payload, bytes) else encode(payload, fmt)
                if layout.streamed:  # the parent writes it into a shard (prep/shards.py)
                    members[rel] = data
                    height, width = payload.shape[:2]
                else:
                    path = f"{out}/{rel}"
                    write_atomic(path, data)
                    height, width = _shape_of(payload, path)
                    stat = os.stat(path)
                    written = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
                outputs.append(
                    {"layout": name, "path": rel, "sha256": sha256_bytes(data), "width": width, "height": height}
                    | ({} if layout.streamed else written)
                )
    except ImageRejected as exc:
        return "rejected", {"paths": pair.sources, "reason": exc.reason, "kind": exc.kind}
    except Exception as exc:  # a bug or an unforeseen input: recorded, and the run goes on
        fatal = resource_cause(exc, out)
        if fatal:  # a full disk, no memory, an unwritable output: the run stops (the parent says so)
            raise fatal from None
        reason = f"unexpected error: {type(exc).__name__}: {exc}"
        return "rejected", {"paths": pair.sources, "reason": reason, "kind": "unexpected error"}
    status = "written" if line is None else "rebuilt"
    return status, _item(pair, outputs) | ({"members": members} if members else {})


def _done_before(task: Task, kept: Kept, hashing: bool = True) -> tuple[str, dict] | None:
    """The result of a pair whose files from the previous run are intact ("skipped"), or whose previous manifest
    line is not a valid record ("invalid": the run stops, as on any manifest it cannot read); None when the pair
    is to be built."""
    pair, line = task
    if line is None:
        return None
    try:
        previous = item_of_line(line)
    except InvalidRecord as exc:
        return "invalid", {"reason": f"item {pair.split}/{pair.key}: {exc}"}
    return kept.intact(pair, previous, line, hashing)


def _tagged(layout: Layout, pair: Pair, images: PairImages | None, formats: Formats):
    return [
        (layout.name, rel, payload, fmt) for rel, payload, fmt in layout.files(pair.key, pair.split, images, formats)
    ]


def _shape_of(payload, path: str) -> tuple[int, int]:
    if isinstance(payload, bytes):
        width, height = image_size(path)
        return height, width
    return payload.shape[0], payload.shape[1]


def require_inputs(*folders: Path) -> None:
    """Missing input folders are usage errors (exit 2), named one per line."""
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"input folder {folder} does not exist")
