"""Many runs of one recipe (its variants and sweep points), packed onto one machine: `pairforge run --pack`.

Each run is the ordinary `pairforge run RECIPE --variant V --sweep KEY=VALUE` in a process of its own, so it keeps
its own folder, checkpoints, logs and results exactly as if it had run alone, reaches the same weights with the same
seed, fails alone (the others go on) and resumes alone (`pairforge run` skips finished stages and continues an
interrupted training). Prep stages run first, one after another, because variants often share a dataset.

How many run at once: on a GPU, the first run starts alone; once it logs its memory (`gpu_mib`, after its first
`--print_freq` steps) as many more start as fit in the free memory (at most `--pack N`); the rest queue. Processes
share the GPU through time-slicing, or through CUDA MPS when its daemon is running (`nvidia-cuda-mps-control -d`),
which lets their kernels overlap. On a CPU, `--pack N` runs N at once with cores / N threads each (`auto`: one
per 4 cores). Why processes rather than streams or a vmapped wide step: see benchmarks/pack_speed.py.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.table import Table

from pairforge.errors import UsageError
from pairforge.recipes import Loaded, load, parse_toml
from pairforge.run import run_dir

CONTEXT_MIB = 600
"""GPU memory of a CUDA context and allocator slack, on top of what a run's tensors reserve (the least assumed
where the driver does not report a process's own memory)."""
GPU_SHARE = 0.9
"""Fraction of the free GPU memory that packed runs may fill."""
CORES_PER_RUN = 4
"""`--pack auto` on a CPU: one run per this many cores."""


@dataclass(frozen=True)
class Member:
    """One run of a pack: a variant (or the recipe itself) at one sweep point."""

    variant: str | None
    sweep: tuple[str, ...]
    loaded: Loaded

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def folder(self) -> Path:
        return run_dir(self.loaded)


def variant_list(path: Path, variant: str | None, variants: str | None) -> list[str | None]:
    """`--variant V` or `--variants all|A,B`; neither: the recipe itself."""
    if variant and variants:
        raise UsageError("--variant and --variants: give one of them")
    if variant or not variants:
        return [variant]
    known = list(parse_toml(path).get("variants", {}))
    if variants == "all":
        if not known:
            raise UsageError(f"--variants all: {path} has no variants")
        return list(known)
    return [v.strip() for v in variants.split(",") if v.strip()]


def parse_sweeps(sweeps: list[str]) -> list[list[str]]:
    """`train.lr=7e-5,2e-4` -> one axis ["train.lr=7e-5", "train.lr=2e-4"] per `--sweep`."""
    axes = []
    for text in sweeps:
        key, sep, values = text.partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or "." not in key or not items:
            raise UsageError(f"--sweep {text!r}: expected STAGE.KEY=V1,V2,... e.g. train.lr=7e-5,2e-4")
        axes.append([f"{key.strip()}={value}" for value in items])
    return axes


def sweep_tag(point: tuple[str, ...]) -> str:
    """("train.lr=7e-5", "train.n_layers_D=4") -> "lr7e-5_n_layers_D4": the run name's suffix."""
    parts = []
    for assignment in point:
        key, _, value = assignment.partition("=")
        parts.append(key.partition(".")[2] + re.sub(r"[^A-Za-z0-9.+-]", "-", value))
    return "_".join(parts)


def expand(
    path: Path, variants: list[str | None], sweeps: list[str], sets: list[str], data_root: Path | None
) -> list[Member]:
    """Every (variant, sweep point) as a loaded recipe; the grid is the product of the sweeps."""
    members = []
    for variant in variants:
        for point in itertools.product(*parse_sweeps(sweeps)):
            loaded = load(path, variant, [*sets, *point], data_root, tag=sweep_tag(point))
            members.append(Member(variant, point, loaded))
    return members


def print_members(members: list[Member]) -> None:
    table = Table(title=f"{len(members)} runs", title_justify="left")
    for column in ("run", "variant", "sweep", "folder"):
        table.add_column(column, overflow="fold")
    for m in members:
        table.add_row(m.name, m.variant or "-", " ".join(m.sweep) or "-", str(m.folder))
    Console().print(table)


# ---- the scheduler -------------------------------------------------------------------------------------------


@dataclass
class Running:
    member: Member
    process: subprocess.Popen
    log: IO
    log_start: int
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Outcome:
    member: Member
    code: int
    seconds: float
    why: str = ""


def parse_pack(text: str) -> int | None:
    """`auto` -> None, `N` -> N >= 1."""
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--pack {text!r}: expected auto or a number of runs >= 1")
    return int(text)


def _nvidia_smi(query: str) -> list[list[str]] | None:
    """Rows of `nvidia-smi --query-<query>` as stripped strings; None where nvidia-smi is missing or fails."""
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-{query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line.strip()]


def free_gpu_mib() -> float | None:
    """Free memory in MiB of the GPU the runs use (the first visible one), from nvidia-smi, so that this process
    never creates a CUDA context of its own (about 500 MiB that the runs could not have); None without a GPU."""
    rows = _nvidia_smi("gpu=index,uuid,memory.free")
    if not rows:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    row = next((r for r in rows if visible in (r[0], r[1])), rows[0]) if visible else rows[0]
    try:
        return float(row[2])
    except (IndexError, ValueError):
        return None


def process_gpu_mib(pid: int) -> float | None:
    """GPU memory that process `pid` holds in MiB as the driver counts it (CUDA context, cuBLAS workspace,
    compile-time autotuning and allocator caches included); None where the driver does not say (e.g. another
    PID namespace)."""
    rows = _nvidia_smi("compute-apps=pid,used_memory") or []
    used = [float(r[1]) for r in rows if len(r) == 2 and r[0] == str(pid) and r[1].replace(".", "", 1).isdigit()]
    return sum(used) if used else None


def run_pack(members: list[Member], argv_of, limit: int | None, console: Console) -> list[Outcome]:
    """Run every member's `pairforge` argv in its own process, as many at once as `limit` and the GPU allow."""
    free = free_gpu_mib()
    cores = os.cpu_count() or 1
    if free is None:
        capacity = limit or max(1, cores // CORES_PER_RUN)
        env = os.environ | {"OMP_NUM_THREADS": str(max(1, cores // capacity))}
    else:
        capacity, env = 1, dict(os.environ)  # grows once the first run reports its memory
    queue, running, outcomes = list(members), [], []
    while queue or running:
        while queue and len(running) < capacity:
            running.append(_start(queue.pop(0), argv_of, env, console))
        time.sleep(0.2)
        if free is not None and capacity == 1 and running:
            per_run = _run_gpu_mib(running[0])
            if per_run:
                fits = max(1, int(free * GPU_SHARE // per_run))
                capacity = min(limit or fits, fits)
                console.print(f"pack: a run takes {per_run:,.0f} MiB of GPU memory; {capacity} at once")
        for slot in [s for s in running if s.process.poll() is not None]:
            running.remove(slot)
            outcomes.append(_finish(slot, console))
    return outcomes


def _start(member: Member, argv_of, env: dict, console: Console) -> Running:
    member.folder.mkdir(parents=True, exist_ok=True)
    log = (member.folder / "pack.log").open("w")
    train_log = member.folder / "log.jsonl"
    log_start = train_log.stat().st_size if train_log.is_file() else 0
    command = [sys.executable, "-m", "pairforge.cli", *argv_of(member)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    console.print(f"pack: started {member.name} (output: {member.folder / 'pack.log'})")
    return Running(member, process, log, log_start)


def _run_gpu_mib(slot: Running) -> float | None:
    """What one run takes on the GPU, once it has logged its memory (so it is past compiling and warm-up): the
    driver's count for its process where available, and never less than its logged tensors plus CONTEXT_MIB."""
    logged = _reported_gpu_mib(slot)
    if not logged:
        return None
    return max(logged + CONTEXT_MIB, process_gpu_mib(slot.process.pid) or 0.0)


def _reported_gpu_mib(slot: Running) -> float | None:
    """The GPU memory the run logged since it started (its log.jsonl records carry `gpu_mib` on CUDA)."""
    path = slot.member.folder / "log.jsonl"
    if not path.is_file():
        return None
    with path.open() as f:
        f.seek(slot.log_start)
        values = [json.loads(line).get("gpu_mib") for line in f if line.strip().startswith("{")]
    values = [v for v in values if v]
    return max(values) if values else None


def _finish(slot: Running, console: Console) -> Outcome:
    slot.log.close()
    seconds = time.perf_counter() - slot.started
    code = slot.process.returncode
    why = ""
    if code:
        lines = [line for line in (slot.member.folder / "pack.log").read_text().splitlines() if line.strip()]
        why = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
    status = "done" if code == 0 else f"failed ({why})"
    console.print(f"pack: {slot.member.name} {status} after {seconds:,.0f} s")
    return Outcome(slot.member, code, seconds, why)


def summary_table(outcomes: list[Outcome]) -> Table:
    """One row per run: status, time, and the scalar metrics of its latest results."""
    rows = [(o, _latest_metrics(o.member.folder)) for o in outcomes]
    names = list(dict.fromkeys(k for _, metrics in rows for k in metrics))
    table = Table(title="pack", title_justify="left")
    for column in ("run", "status", "seconds", *names):
        table.add_column(column, overflow="fold")
    for outcome, metrics in rows:
        status = "done" if outcome.code == 0 else f"failed: {outcome.why}"
        values = [f"{metrics[n]:.4g}" if n in metrics else "-" for n in names]
        table.add_row(outcome.member.name, status, f"{outcome.seconds:,.0f}", *values)
    return table


def _latest_metrics(folder: Path) -> dict[str, float]:
    """The float metrics of the newest `results/*/metrics.json` of a run (counts are left out)."""
    files = sorted((folder / "results").glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    return {k: v for k, v in json.loads(files[-1].read_text()).items() if isinstance(v, float)}
