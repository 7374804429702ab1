"""Runs a job's pairs in parallel, resumes, and fills the manifest: every input is an item or a rejection.

A job is data: a list of `Pair`s, the rejections found while pairing, a picklable *builder* that turns one pair
into `PairImages` (raising `ImageRejected` for bad input), and the layouts to write. Workers build, encode,
hash and write atomically; the parent counts, shows progress and, for the `webdataset` layout, writes the
members the workers encoded into shards in (split, key) order (`shards.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pairforge.errors import Interrupted, PairforgeError, UsageError
from pairforge.prep.executors import LocalPool, RayCluster, run_sharded, tune_worker_process
from pairforge.prep.imageio import ImageRejected, encode, image_size, sha256_bytes, sha256_file, write_atomic
from pairforge.prep.manifest import Manifest, ManifestBuilder, manifest_path, read_manifest
from pairforge.prep.pairing import Pair, Rejection
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
    pairs: list[Pair]
    rejected: list[Rejection]
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


@dataclass
class RunResult:
    written: int = 0
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
    for rejection in job.rejected:
        manifest.add_rejected({"paths": rejection.paths, "reason": rejection.reason, "kind": rejection.kind})
    result = RunResult()
    if settings.dry_run:
        return _counted(result, manifest)
    resuming = manifest_path(job.out).is_file() and not settings.overwrite
    stale = _previous_outputs(job.out) if settings.overwrite else set()
    job.out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(job.out)
    manifest.write_started(job.out)
    start = time.perf_counter()
    executor = _executor(job, settings, resuming)
    streamed = next((layout for layout in job.layouts if layout.streamed), None)
    sink = ShardSink(job.out, streamed) if streamed else None
    pairs = sorted(job.pairs, key=lambda p: (p.split, p.key))  # the manifest's order, and the shards'
    try:
        with progress_bar(settings.progress, "pairs", count_columns("pairs"), len(pairs)) as update:
            for status, record in executor.results(pairs):
                update(advance=1)
                if status == "rejected":
                    manifest.add_rejected(record)
                    continue
                members = record.pop("members", {})
                if sink:
                    sink.add(record, members)
                manifest.add_item(record)
                if stale:  # --overwrite: outputs this run makes again are not stale
                    stale.difference_update(output["path"] for output in record["outputs"])
                result.written += status == "written"
                result.skipped += status == "skipped"
        if sink:
            header.shards = sink.close()
    except KeyboardInterrupt:
        executor.close()  # the workers finish the pairs they hold: counted after them
        raise Interrupted(f"interrupted: {_kept(job, pairs)}; run the same command again to finish") from None
    except ResourceExhausted as exc:
        raise PairforgeError(
            f"{exc}: stopped, {_kept(job, pairs)}; {exc.remedy()}, then run the same command again to finish"
        ) from None
    finally:
        executor.close()
    result.seconds = time.perf_counter() - start
    delete_recorded(job.out, stale)
    manifest.write(job.out)
    return _counted(result, manifest)


def _counted(result: RunResult, manifest: ManifestBuilder) -> RunResult:
    result.rejected, result.rejected_by_kind = manifest.rejected, dict(manifest.rejected_by_kind.most_common())
    result.counts = dict(sorted(manifest.counts.items()))
    return result


def _kept(job: Job, pairs: list[Pair]) -> str:
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
        previous = read_manifest(out)
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


def _previous_outputs(out: Path) -> set[str]:
    if not manifest_path(out).is_file():
        return set()
    return {o.path for it in read_manifest(out).items for o in it.outputs if o.layout != WebDatasetLayout.name}


class _InProcess:
    """Pairs built in this process, one after another (--workers 1, tiny jobs, debugging)."""

    def __init__(self, state: tuple):
        _init_worker(state)

    def results(self, pairs: list[Pair]) -> Iterator[tuple[str, dict]]:
        return map(_process, pairs)

    def close(self) -> None:
        pass


class _Sharded:
    """A local pool or a Ray cluster running shards of pairs (see executors.py)."""

    def __init__(self, backend, workers: int):
        self.backend, self.workers = backend, workers

    def results(self, pairs: list[Pair]) -> Iterator[tuple[str, dict]]:
        return run_sharded(self.backend, pairs, self.workers)

    def close(self) -> None:
        self.backend.close()


def _executor(job: Job, settings: RunSettings, resuming: bool):
    """Start the workers that will build the job's pairs."""
    workers = min(settings.workers or default_workers(), max(1, len(job.pairs)))
    state = (os.fspath(job.out), job.builder, job.layouts, job.formats, resuming)
    if settings.executor == "ray":
        return _Sharded(RayCluster(_run_shard_with_state, state, settings.ray_address), workers)
    if workers <= 1 or len(job.pairs) < 4:
        return _InProcess(state)
    return _Sharded(LocalPool(_run_shard, _init_worker, state, workers), workers)


_STATE: tuple | None = None


def _init_worker(state: tuple) -> None:
    global _STATE
    _STATE = state
    tune_worker_process()


def _run_shard(pairs: list[Pair]) -> list[tuple[str, dict]]:
    return [_process(pair) for pair in pairs]


def _run_shard_with_state(state: tuple, pairs: list[Pair]) -> list[tuple[str, dict]]:
    _init_worker(state)
    return _run_shard(pairs)


def _process(pair: Pair) -> tuple[str, dict]:
    """Build one pair and write its files (or keep intact existing ones); never raises for bad input.

    Returns plain dicts (cheap to send between processes) shaped as `ItemRecord` or `RejectedRecord`."""
    out, builder, layouts, formats, resuming = _STATE
    item = {"key": pair.key, "split": pair.split, "sources": pair.sources}
    if resuming and not any(layout.streamed for layout in layouts):  # shards are rebuilt on every run
        planned = [(name, rel) for layout in layouts for name, rel, _, _ in _tagged(layout, pair, None, formats)]
        if all(os.path.isfile(f"{out}/{rel}") for _, rel in planned):
            return "skipped", {**item, "outputs": [_existing(f"{out}/{rel}", name, rel) for name, rel in planned]}
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
                outputs.append(
                    {"layout": name, "path": rel, "sha256": sha256_bytes(data), "width": width, "height": height}
                )
    except ImageRejected as exc:
        return "rejected", {"paths": pair.sources, "reason": exc.reason, "kind": exc.kind}
    except Exception as exc:  # a bug or an unforeseen input: recorded, and the run goes on
        fatal = resource_cause(exc, out)
        if fatal:  # a full disk, no memory, an unwritable output: the run stops (the parent says so)
            raise fatal from None
        reason = f"unexpected error: {type(exc).__name__}: {exc}"
        return "rejected", {"paths": pair.sources, "reason": reason, "kind": "unexpected error"}
    return "written", {**item, "outputs": outputs} | ({"members": members} if members else {})


def _tagged(layout: Layout, pair: Pair, images: PairImages | None, formats: Formats):
    return [
        (layout.name, rel, payload, fmt) for rel, payload, fmt in layout.files(pair.key, pair.split, images, formats)
    ]


def _shape_of(payload, path: str) -> tuple[int, int]:
    if isinstance(payload, bytes):
        width, height = image_size(path)
        return height, width
    return payload.shape[0], payload.shape[1]


def _existing(path: str, layout: str, rel: str) -> dict:
    width, height = image_size(path)
    return {"layout": layout, "path": rel, "sha256": sha256_file(path), "width": width, "height": height}


def require_inputs(*folders: Path) -> None:
    """Missing input folders are usage errors (exit 2), named one per line."""
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"input folder {folder} does not exist")
