"""Where a job's pairs run: a local process pool or a Ray cluster, both in shards of pairs.

Both run the same per-pair code (`runner._process`) and give results back in the order of the pairs, whatever
order the workers finish in: the runner can then write the manifest and the shards as it goes. A shard whose
worker dies (a crash in a decoder, a killed node) is run again at once, pair by pair, each pair alone; a pair
that still takes its worker down is rejected with the reason, so no input is ever missing from the manifest.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

import cv2

from pairforge.errors import UsageError
from pairforge.resources import ResourceExhausted

Result = tuple[str, dict]
Shard = list
"""Items for one task: the runner's (pair, previous outputs), the checker's file records."""
RunShard = Callable[[Shard], list[Result]]
EXECUTORS = ("local", "ray")
IN_FLIGHT = 4
"""Shards per local worker submitted ahead of the oldest unfinished one: enough to keep every worker busy, few
enough that the finished results waiting for it hold little memory."""


def shards_of(items: Iterable, count: int, workers: int) -> Iterator[list]:
    """The `count` items in shards small enough to balance the load and show progress, large enough to amortise
    dispatch; taken from `items` as the shards are needed."""
    size = max(1, min(32, count // (workers * 8)))
    items = iter(items)
    while shard := list(itertools.islice(items, size)):
        yield shard


def run_sharded(backend, shards: Iterable[list], paths_of: Callable[[object], dict]) -> Iterator[Result]:
    """Every item's result, in the order of `shards` (taken as they are needed: they may come from a generator);
    the items of a crashed shard are retried alone, in place, and one that crashes alone is rejected (its
    `paths_of` named)."""
    for shard, outcome in backend.map_shards(shards):
        if not isinstance(outcome, Exception):
            yield from outcome
            continue
        for item in shard:
            alone = backend.run_alone([item])
            if isinstance(alone, Exception):
                reason = f"worker crashed while building this pair ({type(alone).__name__})"
                yield "rejected", {"paths": paths_of(item), "reason": reason, "kind": "worker crashed"}
            else:
                yield from alone


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
KEEP_IN_HEAP = 32 * 2**20  # glibc's largest mmap threshold on 64-bit


def tune_worker_process() -> None:
    """Let glibc reuse freed image buffers instead of unmapping them (called once in every worker). By default
    every buffer over 128 KiB (a 256x256 RGB image is 192 KiB) goes back to the kernel when freed and is
    page-faulted in again for the next pair: reading, joining and writing 600 256x256 JPEG pairs took
    74,000-87,000 minor page faults, and 510 with this setting. A no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, KEEP_IN_HEAP)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * KEEP_IN_HEAP)
    except (OSError, AttributeError):
        pass


PR_SET_PDEATHSIG = 1  # Linux prctl(2)


def start_worker(init: Callable, state: tuple, parent: int) -> None:
    """A pool worker's initializer: it dies with the process that started it and leaves Ctrl-C to it (the parent
    stops the pool; a worker finishes the pairs it holds, with no traceback of its own), then runs `init(state)`."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    init(state)


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies, even by kill -9: a worker never goes on writing into
    an output that nobody records. Where prctl does not exist the pool's own shutdown is all there is."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@contextmanager
def single_threaded_opencv() -> Iterator[None]:
    """Workers started inside run OpenCV single-threaded: parallelism comes from the processes, and OpenCV's own
    thread pool spin-waits between calls (150,000 sched_yield calls for 1000 pairs on 2 workers), taking the
    cores the other workers need. Set here, in the parent, around the start: a forked child inherits the setting
    (calling `cv2.setNumThreads` in a child forked after the parent used OpenCV's pool deadlocks), a spawned one
    reads `OPENCV_FOR_THREADS_NUM`. The parent's own setting is restored afterwards."""
    threads, variable = cv2.getNumThreads(), os.environ.get("OPENCV_FOR_THREADS_NUM")
    cv2.setNumThreads(1)
    os.environ["OPENCV_FOR_THREADS_NUM"] = "1"
    try:
        yield
    finally:
        cv2.setNumThreads(threads)
        if variable is None:
            os.environ.pop("OPENCV_FOR_THREADS_NUM", None)
        else:
            os.environ["OPENCV_FOR_THREADS_NUM"] = variable


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Workers forked inside never garbage-collect the objects they inherit (the job's pairs among them): a
    collection would write to each object's header and copy every page of the parent's heap into each worker."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# Libraries whose threads or device state do not survive fork(): with one of them loaded, workers are spawned.
FORK_UNSAFE = ("torch", "onnxruntime", "ray")


def start_method() -> str:
    """`fork` (workers start in milliseconds, inheriting loaded modules) while this process runs no other Python
    thread and no fork-unsafe library; otherwise `spawn` (each worker imports afresh, about a second)."""
    safe = threading.active_count() == 1 and not any(name in sys.modules for name in FORK_UNSAFE)
    return "fork" if safe and "fork" in multiprocessing.get_all_start_methods() else "spawn"


class LocalPool:
    """Worker processes on this machine, started at once (before any progress-bar thread exists, so they can be
    forked). A crash breaks the whole pool: the shards it had in flight are handed back as failed (the runner
    retries their pairs one at a time in a spare one-worker pool) and a new pool runs the rest."""

    def __init__(self, run_shard: RunShard, init: Callable, state: tuple, workers: int):
        self.run_shard, self.init, self.state, self.workers = run_shard, init, state, workers
        self.pool = self._start(workers)
        self.spare: ProcessPoolExecutor | None = None

    def _start(self, workers: int) -> ProcessPoolExecutor:
        context = multiprocessing.get_context(start_method())
        with single_threaded_opencv(), frozen_heap():
            pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=start_worker, initargs=(self.init, self.state, os.getpid())
            )
            try:
                for future in [pool.submit(int) for _ in range(workers)]:
                    future.result()  # start every worker now
            except BaseException:  # Ctrl-C while the workers start: none is left behind
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return pool

    def map_shards(self, shards: Iterable[Shard]) -> Iterator[tuple[Shard, list[Result] | Exception]]:
        """Each shard with its results (or the exception of the crash that took it down), in order. Submission
        runs IN_FLIGHT shards per worker ahead of the oldest unfinished one (and takes the shards as it goes)."""
        upcoming = iter(shards)
        waiting = next(upcoming, None)
        running: deque[tuple[Shard, Future]] = deque()
        while waiting is not None or running:
            while waiting is not None and len(running) < self.workers * IN_FLIGHT:
                try:
                    running.append((waiting, self.pool.submit(self.run_shard, waiting)))
                except BrokenProcessPool:  # a crash seen first here: the running shards report it below
                    break
                waiting = next(upcoming, None)
            if not running:  # only after a crash: nothing in flight to report it
                self._restart()
                continue
            shard, future = running.popleft()
            try:
                yield shard, future.result()
            except BrokenProcessPool as exc:
                yield shard, exc
                while running:  # those not finished died with the pool: their pairs are retried alone
                    shard, future = running.popleft()
                    finished = future.done() and future.exception() is None
                    yield shard, future.result() if finished else exc
                self._restart()

    def _restart(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        self.pool = self._start(self.workers)

    def run_alone(self, shard: Shard) -> list[Result] | Exception:
        """Run `shard` in the spare one-worker pool; a crash there is returned (and the spare started anew)."""
        self.spare = self.spare or self._start(1)
        try:
            return self.spare.submit(self.run_shard, shard).result()
        except BrokenProcessPool as exc:
            self.spare.shutdown()
            self.spare = None
            return exc

    def close(self) -> None:
        for pool in (self.pool, self.spare):
            if pool is not None:  # shards not started yet (after Ctrl-C, say) are dropped
                pool.shutdown(cancel_futures=True)


class RayCluster:
    """Ray tasks, one per shard, on a local Ray instance or the cluster at `address` (`auto` or HOST:PORT).
    Outputs must be on a filesystem every node sees."""

    def __init__(self, run_shard_with_state: Callable, state: tuple, address: str | None):
        try:
            import ray
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'pairforge[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        self.task = ray.remote(max_retries=2)(run_shard_with_state)
        self.state = ray.put(state)
        self.in_flight = max(1, int(ray.cluster_resources().get("CPU", 1))) * IN_FLIGHT

    def map_shards(self, shards: Iterable[Shard]) -> Iterator[tuple[Shard, list[Result] | Exception]]:
        """Each shard with its results (or the task's error), in order. The driver streams: IN_FLIGHT tasks per
        CPU of the cluster are submitted ahead of the oldest unfinished one, and Ray's scheduler spreads them."""
        running: deque[tuple[Shard, object]] = deque()
        for shard in shards:
            running.append((shard, self.task.remote(self.state, shard)))
            if len(running) >= self.in_flight:
                shard, ref = running.popleft()
                yield shard, self._get(ref)
        while running:
            shard, ref = running.popleft()
            yield shard, self._get(ref)

    def run_alone(self, shard: Shard) -> list[Result] | Exception:
        return self._get(self.task.remote(self.state, shard))

    def _get(self, ref) -> list[Result] | Exception:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            if isinstance(getattr(exc, "cause", None), ResourceExhausted):  # the run stops, as with local workers
                raise exc.cause from None
            return exc

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
