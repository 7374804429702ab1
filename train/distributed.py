"""Data-parallel training (DDP) with torchrun: this process's rank, the process group, and `--gpus N`.

torchrun starts one process per GPU and tells each its place through environment variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Every rank builds the same model from the same seed, takes its own slice
of each global batch, and DistributedDataParallel averages the gradients; rank 0 alone writes the run folder.
Backends: nccl on CUDA (one GPU per rank, cuda:LOCAL_RANK), gloo on CPU.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import timedelta
from itertools import zip_longest
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from pairforge.errors import PairforgeError, UsageError

T = TypeVar("T", bound=Any)  # a dataclass of lists, tensors and dataclasses
TIMEOUT = timedelta(minutes=10)
"""How long a collective waits for the other ranks (a checkpoint write on rank 0 must fit in it)."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: rank 0 of 1 when not launched by torchrun."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        """The rank torchrun gave this process (RANK, WORLD_SIZE, LOCAL_RANK); rank 0 of 1 without torchrun."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes logs, samples, checkpoints and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, name: str) -> torch.device:
        """`--device` for this rank, indexed and made current: on CUDA every rank takes the GPU of its LOCAL_RANK."""
        from pairforge.train.devices import resolve_device

        if not self.distributed:
            return resolve_device(name)
        device = resolve_device(name, make_current=False)
        if device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"rank {self.rank}: LOCAL_RANK {self.local_rank} but only {torch.cuda.device_count()} GPUs here"
                " (lower --gpus / --nproc_per_node)"
            )
        return resolve_device(f"cuda:{self.local_rank}")

    def start(self, device: torch.device) -> None:
        """Join the process group (nccl on CUDA, gloo on CPU); a no-op for a single process."""
        if not self.distributed or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of `tensor` over the ranks (every rank must call it at the same point); itself alone."""
        if not dist.is_initialized():
            return tensor
        total = tensor.clone()
        dist.all_reduce(total)
        return total / self.size

    def seed(self, seed: int, step: int) -> None:
        """Under DDP, give each rank its own RNG stream from (seed, step, rank): dropout masks, noise channels
        and image-pool draws differ between the ranks' samples, as they would within one process's batch
        (the weights are equal already: DDP broadcasts rank 0's)."""
        if self.distributed:
            torch.manual_seed((seed * 1_000_003 + step) * 1009 + self.rank + 1)

    def share(self, files: T) -> T:
        """This rank's share of a dataset's file lists (dataclass list fields): items rank, rank + size, ..."""
        if not self.distributed:
            return files
        lists = {f.name: getattr(files, f.name) for f in fields(files) if isinstance(getattr(files, f.name), list)}
        if min(map(len, lists.values())) < self.size:
            raise UsageError(f"{self.size} ranks need at least {self.size} images per domain; use fewer --gpus")
        return replace(files, **{name: items[self.rank :: self.size] for name, items in lists.items()})

    def gather(self, shard: T) -> T:
        """The whole cache from every rank's share of it (see `share`): lists and tensors (rows = items, padded
        with zeros to the largest image, as one process pads) interleaved back into the dataset's order; other
        fields are kept. Through a gloo group: the cache is on the host until it is placed."""
        if not self.distributed:
            return shard
        group = dist.new_group(backend="gloo")
        return _gather(shard, self.size, group)

    def stop(self) -> None:
        """Wait for every rank (rank 0's last checkpoint is written), then leave the process group."""
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _gather(shard: T, size: int, group: dist.ProcessGroup) -> T:
    values = {}
    for field in fields(shard):
        value = getattr(shard, field.name)
        if is_dataclass(value):
            values[field.name] = _gather(value, size, group)
        elif isinstance(value, list):
            parts: list[list] = [[] for _ in range(size)]
            dist.all_gather_object(parts, value, group=group)
            values[field.name] = [item for row in zip_longest(*parts) for item in row if item is not None]
        elif torch.is_tensor(value):
            values[field.name] = _gather_rows(value, size, group)
        else:  # a description of the whole dataset (what the values mean): the same on every rank
            values[field.name] = value
    return type(shard)(**values)


def _gather_rows(rows: torch.Tensor, size: int, group: dist.ProcessGroup) -> torch.Tensor:
    """Row j of rank r becomes row j * size + r; every other dimension is zero-padded to the largest."""
    shape = torch.tensor(rows.shape)
    total = torch.tensor(rows.shape[0])
    dist.all_reduce(shape, dist.ReduceOp.MAX, group=group)
    dist.all_reduce(total, group=group)
    padded = rows.new_zeros(shape.tolist())
    padded[tuple(slice(0, n) for n in rows.shape)] = rows
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded, group=group)
    return torch.stack(parts, 1).flatten(0, 1)[: int(total)]


def data_parallel(net: nn.Module, sync_bn: bool = False) -> nn.Module:
    """`net` wrapped in DistributedDataParallel when this process is one rank of several, else `net` itself.

    The wrapper shares `net`'s parameters: the optimizers and checkpoints keep using `net` (reference key
    names). BatchNorm stays per GPU (as the reference) unless `sync_bn`, which converts it in place to
    SyncBatchNorm (our networks' roots are containers, never a BatchNorm). Buffers are synced once, at
    construction, not at every forward: each rank keeps its own running statistics, rank 0's are saved.
    """
    if not dist.is_initialized():
        return net
    if sync_bn:
        nn.SyncBatchNorm.convert_sync_batchnorm(net)
    device = next(net.parameters()).device
    device_ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=device_ids, broadcast_buffers=False)


def check_sync_bn(sync_bn: bool, norm: str, device: torch.device) -> None:
    """--sync_bn needs batch norm and GPUs (SyncBatchNorm has no CPU kernel)."""
    if sync_bn and norm != "batch":
        raise UsageError(f"--sync_bn converts BatchNorm, but --norm is {norm}: drop --sync_bn or use --norm batch")
    if sync_bn and device.type != "cuda":
        raise UsageError("--sync_bn needs CUDA GPUs (SyncBatchNorm has no CPU implementation); drop --sync_bn")


def rescale_step(step: int, metadata: dict[str, str], global_batch: int, steps_per_epoch: int) -> int:
    """The step at which a run saved with another global batch (another world size or per-GPU batch) goes on:
    the same epoch, and as far into it as the saved run had got (rounded up: no sample is seen twice)."""
    old_batch = int(metadata.get("global_batch", global_batch))
    old_steps = int(metadata.get("steps_per_epoch", steps_per_epoch))
    if (old_batch, old_steps) == (global_batch, steps_per_epoch):
        return step
    epoch, index = divmod(step, old_steps)
    return epoch * steps_per_epoch + min(steps_per_epoch, -(-index * old_batch // global_batch))


def relaunch(gpus: int, device: str, argv: list[str]) -> None:
    """Run `pairforge <argv>` as `gpus` ranks on this node through torchrun (torch.distributed.run), and wait.

    A rank that fails ends the run (torchrun stops the others): one line naming the rank and its exit code;
    checkpoints are written atomically by rank 0, so the last one is intact for `--continue`.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from pairforge.train.devices import resolve_device

    if resolve_device(device, make_current=False).type == "cuda" and gpus > torch.cuda.device_count():
        raise UsageError(f"--gpus {gpus}: this machine has {torch.cuda.device_count()} CUDA GPUs")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // gpus)))  # each rank its share of the cores
    args = parse_args(["--standalone", f"--nproc_per_node={gpus}", "--module", "pairforge.cli", *argv])
    try:
        run(args)
    except ChildFailedError as exc:
        stopped = -signal.SIGTERM  # how torchrun stops the ranks that did not fail themselves
        failed = {rank: f for rank, f in exc.failures.items() if f.exitcode != stopped} or exc.failures
        what = ", ".join(f"rank {rank} ({_exit(failed[rank].exitcode)})" for rank in sorted(failed))
        raise PairforgeError(
            f"training stopped: {what} of {gpus} failed (its message, if any, is above) and torchrun stopped the"
            " others; rank 0 writes checkpoints atomically, so the last one is intact: resume with --continue"
        ) from None


def _exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
