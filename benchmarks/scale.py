"""Scale: `combine` (build), `check` and the same `combine` again (a no-op re-run) at 10k, 100k and 1M tiny pairs.

    python benchmarks/scale.py                        # 10k, 100k and 1M 32x32 JPEG pairs
    python benchmarks/scale.py --sizes 10k,100k --workdir /big/disk/scale

For each size it writes its own inputs (kept in --workdir between runs: generating 1M pairs takes minutes), runs
each command as its users do (the real CLI, a fresh process, all cores) and prints its time and peak memory: the
largest process's peak RSS and the peak of the whole process tree's PSS (shared pages counted once, polled), with
the ratios check/build and rerun/build of the same run. The no-op re-run is measured twice: as users meet it,
taking the pairing the build saved (`rerun`: the inputs had settled, see prep/saved_pairing.py), and with that
pairing deleted, so that it lists and pairs the input folders again (`rerun_listing`). The outputs are deleted
after each size; the inputs only with --clean.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from pairforge.prep import saved_pairing

POLL_S = 0.2


def parse_sizes(text: str) -> list[int]:
    """`10k,100k,1M` -> [10000, 100000, 1000000]."""
    scale = {"k": 1_000, "m": 1_000_000}
    return [int(float(p[:-1]) * scale[p[-1].lower()]) if p[-1].lower() in scale else int(p) for p in text.split(",")]


def generate_tiny_pairs(folder: Path, n: int, variants: int = 64) -> tuple[Path, Path]:
    """n 32x32 JPEG pairs (A, B) with the same names, made from `variants` distinct encodings (generating a million
    would take longer than the build). Files already there are kept: the inputs are reused across runs."""
    a_dir, b_dir = folder / "A", folder / "B"
    a_dir.mkdir(parents=True, exist_ok=True)
    b_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(variants):
        image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        encoded.append([cv2.imencode(".jpg", img)[1].tobytes() for img in (image, 255 - image)])
    have = len(os.listdir(b_dir))
    for i in range(max(0, have - 1), n):
        a_bytes, b_bytes = encoded[i % variants]
        (a_dir / f"{i:07d}.jpg").write_bytes(a_bytes)
        (b_dir / f"{i:07d}.jpg").write_bytes(b_bytes)
    return a_dir, b_dir


def tree_pss_mib(root_pid: int) -> float:
    """The PSS of `root_pid` and all its descendants, in MiB (0 for processes that vanished meanwhile)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total_kib, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                total_kib += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total_kib / 1024


def measure(argv: list[str]) -> dict:
    """Run `argv` in a fresh process (through `--measure`, so the largest-process peak is this command's alone):
    seconds, peak RSS of its largest process, peak PSS of its process tree, and its --json summary."""
    command = [sys.executable, __file__, "--measure", *argv]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def poll() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_pss_mib(proc.pid))
            time.sleep(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = proc.communicate()
    poller.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.splitlines()[-1])
    result["tree_pss_mib"] = round(peak[0])
    return result


def run_measured(argv: list[str]) -> None:
    """The `--measure` side: run the pairforge CLI as a child, print its time, largest-process peak and summary."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pairforge.cli", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = json.loads(proc.stdout)
    print(json.dumps({"seconds": round(seconds, 2), "max_rss_mib": round(peak_mib), "summary": summary}))


def bench_size(workdir: Path, n: int) -> dict:
    start = time.perf_counter()
    a_dir, b_dir = generate_tiny_pairs(workdir / f"inputs_{n}", n)
    generated = time.perf_counter() - start
    out = workdir / f"out_{n}"
    shutil.rmtree(out, ignore_errors=True)
    combine = ["combine", str(a_dir), str(b_dir), str(out), "--json"]
    time.sleep(saved_pairing.SETTLE_S)  # inputs just written are listed again by every run until they settle
    os.sync()
    build = measure(combine)
    assert build["summary"]["written"] == n, build["summary"]
    assert (out / saved_pairing.NAME).is_file(), "the build saved no pairing"
    os.sync()
    check = measure(["check", str(out), "--json"])
    assert check["summary"]["ok"] and check["summary"]["items"] == n, check["summary"]
    rerun = measure(combine)
    assert rerun["summary"]["skipped"] == n, rerun["summary"]
    (out / saved_pairing.NAME).unlink()
    rerun_listing = measure(combine)
    assert rerun_listing["summary"]["skipped"] == n, rerun_listing["summary"]
    shutil.rmtree(out)
    row = {"pairs": n, "inputs_generated_s": round(generated, 1)}
    for name, result in (("build", build), ("check", check), ("rerun", rerun), ("rerun_listing", rerun_listing)):
        row[name] = {k: result[k] for k in ("seconds", "max_rss_mib", "tree_pss_mib")}
    for name in ("check", "rerun", "rerun_listing"):
        row[f"{name}_over_build"] = round(row[name]["seconds"] / build["seconds"], 3)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        return run_measured(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10k,100k,1M", help="Numbers of pairs, e.g. 10k,100k,1M.")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pairforge_scale"), help="Inputs and outputs.")
    parser.add_argument("--clean", action="store_true", help="Delete the generated inputs at the end.")
    args = parser.parse_args()
    rows = []
    for n in parse_sizes(args.sizes):
        rows.append(bench_size(args.workdir, n))
        print(json.dumps(rows[-1]), flush=True)
    for smaller, larger in itertools.pairwise(rows):
        for name in ("build", "check", "rerun", "rerun_listing"):
            added = larger[name]["tree_pss_mib"] - smaller[name]["tree_pss_mib"]
            growth = added * 1024 / (larger["pairs"] - smaller["pairs"])
            span = f"from {smaller['pairs']} to {larger['pairs']} pairs"
            print(f"{name}: tree PSS grows {growth:.3f} KiB per pair {span}")
    if args.clean:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
