"""One command that proves pairforge's GPU paths, the way a user runs them (`pairforge ...` in processes of their own).

  python benchmarks/gpu_check.py                    # a GPU: every path below (H200: the path rows and the tests
                                                    # took 5.5 min, speed rows about 1.5 min each pair)
  python benchmarks/gpu_check.py --only paths,tests # split it across calls with --only / --rows
  python benchmarks/gpu_check.py --tiny             # a CPU: the same paths with tiny networks (CI), under 3 minutes
  python benchmarks/gpu_check.py --reference DIR    # also time the reference trainer (a checkout of
                                                    # pytorch-CycleGAN-and-pix2pix, kept outside this repo)

Rows, each a real command on generated 256x256 pairs (A: colour blobs; B: a pixel-wise function of A):
- speed, one at a time: pix2pix fast mode (bf16, compile, CUDA graph) at batch 1, cold and with a warm compile
  cache, and at batch 16; `--no_fast` at batch 16; CycleGAN fast at batch 1, cold and warm; fast vs eager
  held-out L1 after the same steps; with --reference, the reference trainer on the same data and the ratios;
- paths, several at once: `--continue` in fast mode against an uninterrupted run (and a second uninterrupted run,
  the GPU's own run-to-run noise), pix2pix and CycleGAN; wgangp, `--noise_nc`, `--netD multiscale`,
  `--lambda_perceptual`, `--logger tensorboard`, the pinned-host cache (a dataset that does not fit on the GPU);
  `test`, `translate` and `export` (ONNX and TorchScript) on the device; `eval` FCN-score at native 2048x1024 with
  `--bf16`, and out-of-memory tiling under a memory cap; a `--pack 2` sweep; the training tests with the GPU visible.
Prints one table (row per path: pass/fail, img/s, seconds from the command's start to its first finished training
step, peak GPU memory reserved), the issue-22 targets, then one JSON line; exits 1 when any row fails. On a CPU
fast mode is a no-op (eager fp32), so --tiny checks the commands and the checks themselves; rows that need CUDA
(memory caps) say "skipped".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from train_speed import make_dataset, steady_rate  # benchmarks/ is on the path when run as a script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/ (the eval check's tiny segmentation network)

FULL = {"netG": "unet_256", "ngf": 64, "ndf": 64, "load_size": 286, "crop_size": 256}
SMALL = {"netG": "unet_128", "ngf": 16, "ndf": 16, "load_size": 142, "crop_size": 128}
TINY = {"netG": "unet_128", "ngf": 4, "ndf": 4, "load_size": 136, "crop_size": 128}
CYCLE = {"model": "cycle_gan", "netG": "resnet_9blocks"}
CYCLE_SMALL = {"model": "cycle_gan", "netG": "resnet_6blocks", "ngf": 16, "ndf": 16, "load_size": 142, "crop_size": 128}
CYCLE_TINY = CYCLE_SMALL | {"ngf": 4, "ndf": 4, "load_size": 136}
STEPS = {"b1": 600, "b16": 300, "cycle": 300, "warm": 60, "path": 24, "ref_b1": 300, "ref_b16": 100, "ref_cycle": 150}
TINY_STEPS = {"b1": 8, "b16": 4, "cycle": 4, "warm": 4, "path": 4, "ref_b1": 8, "ref_b16": 4, "ref_cycle": 4}
RESUME_SLACK = 1e-5
"""`--continue` passes when its weights differ from the uninterrupted run's by at most 2x the difference between
two uninterrupted runs (nondeterministic GPU kernels), or by this much (runs that agree bit for bit)."""


@dataclass
class Row:
    """One checked path."""

    name: str
    ok: bool | None  # None: skipped
    img_s: float | None = None
    first_step_s: float | None = None
    peak_mib: float | None = None
    note: str = ""


@dataclass
class Context:
    work: Path
    data: Path
    device: str
    cuda: bool
    steps: dict
    batch16: int
    env: dict

    def flags(self, options: dict) -> list[str]:
        return [str(x) for key, value in options.items() for x in (f"--{key}", value)]


def pairforge(ctx: Context, *args, wrapper: str | None = None, env: dict | None = None) -> tuple[int, str, float]:
    """Run `pairforge ARGS` (or a `python -c` wrapper that sets something up, then calls the CLI) in a process of its
    own; returns (exit code, the last lines of its stderr, the time it was launched)."""
    head = [sys.executable, "-c", wrapper] if wrapper else [sys.executable, "-m", "pairforge.cli"]
    launched = time.time()
    done = subprocess.run(
        [*head, *map(str, args)], capture_output=True, text=True, env=ctx.env | (env or {}), cwd=ctx.work
    )
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    return done.returncode, tail, launched


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.startswith("{")]


def train(ctx: Context, name: str, options: dict, steps: int, *extra, wrapper: str | None = None, env=None) -> Row:
    """`pairforge train` with `options` for `steps` steps; the row reads its speed, start-up and memory from the log."""
    prints = max(1, steps // 6)
    args = ["train", "--dataroot", ctx.data, "--runs_dir", ctx.work / "runs", "--name", name, "--device", ctx.device]
    args += [*ctx.flags(options), "--max_steps", steps, "--print_freq", prints, "--display_freq", 10**6, "-q"]
    code, tail, launched = pairforge(ctx, *args, *extra, wrapper=wrapper, env=env)
    if code:
        return Row(name, False, note=tail)
    log = read_log(ctx.work / "runs" / name)
    first = next((r["time"] for r in log if r.get("event") == "first_step"), None)
    mode = next(r["mode"] for r in log if r.get("event") in ("start", "resume"))
    peak = max((r.get("gpu_mib", 0) for r in log), default=0) or None
    rate = steady_rate(ctx.work / "runs" / name / "log.jsonl") if steps >= 2 * prints else None
    return Row(name, True, rate and round(rate, 1), first and round(first - launched, 1), peak, mode)


def test_l1(ctx: Context, name: str) -> float:
    """Held-out L1 of a run (`pairforge test` on the test split)."""
    code, tail, _ = pairforge(ctx, "test", name, "--runs_dir", ctx.work / "runs", "--device", ctx.device, "-q")
    if code:
        raise RuntimeError(tail)
    return json.loads((ctx.work / "runs" / name / "results" / "test_latest" / "metrics.json").read_text())["l1"]


# ---- speed rows, one at a time ----------------------------------------------------------------------------------


def speed_rows(ctx: Context, p2p: dict, cycle: dict, wanted: Callable[[str], bool]) -> list[Row]:
    s, cold = ctx.steps, {"TORCHINDUCTOR_CACHE_DIR": str(ctx.work / "cache-cold")}  # cold: an empty compile cache
    specs = [
        ("p2p_fast_b1_cold", p2p | {"batch_size": 1}, s["b1"], [], cold),
        ("p2p_fast_b1_warm", p2p | {"batch_size": 1}, s["warm"], [], cold),  # the same shapes again: warm
        ("p2p_fast_b16", p2p | {"batch_size": ctx.batch16}, s["b16"], [], None),
        ("p2p_eager_b16", p2p | {"batch_size": ctx.batch16}, s["b16"], ["--no_fast"], None),
        ("cycle_fast_b1_cold", cycle | {"batch_size": 1}, s["cycle"], [], cold),
        ("cycle_fast_b1_warm", cycle | {"batch_size": 1}, s["warm"], [], cold),
    ]
    rows = [
        show(train(ctx, name, options, steps, *extra, env=env))
        for name, options, steps, extra, env in specs
        if wanted(name)
    ]
    by = {row.name: row for row in rows}
    fast, eager = by.get("p2p_fast_b16"), by.get("p2p_eager_b16")
    if fast and eager and fast.ok and eager.ok:
        l1_fast, l1_eager = test_l1(ctx, "p2p_fast_b16"), test_l1(ctx, "p2p_eager_b16")
        diff = abs(l1_fast - l1_eager) / l1_eager
        note = f"held-out L1 fast {l1_fast:.4f} vs eager {l1_eager:.4f} ({diff:.1%})"
        rows.append(show(Row("fast_vs_eager_l1", diff <= 0.05, note=note)))
    return rows


def show(row: Row) -> Row:
    """Print a row as soon as it is known (a run cut short by a time limit still shows what it had)."""
    print(f"  {row.name}: {'skip' if row.ok is None else ('pass' if row.ok else 'FAIL')} {row.img_s or '-'} img/s,"
          f" first step {row.first_step_s or '-'} s, {row.peak_mib or '-'} MiB; {row.note}", flush=True)  # fmt: skip
    return row


REFERENCE_DRIVER = """
import json, sys, time, torch
from options.train_options import TrainOptions
from data import create_dataset
from models import create_model
steps, warm = int(sys.argv[1]), int(sys.argv[2])
sys.argv = sys.argv[:1] + sys.argv[3:]
opt = TrainOptions().parse()
dataset = create_dataset(opt)
model = create_model(opt)
model.setup(opt)
sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
done, first, start = 0, None, None
while done < steps:
    for data in dataset:
        model.set_input(data)
        model.optimize_parameters()
        done += 1
        if done in (1, warm):
            sync()
            first = first or time.time()
            start = time.perf_counter() if done == warm else start
        if done == steps:
            break
sync()
rate = (steps - warm) * opt.batch_size / (time.perf_counter() - start)
mib = torch.cuda.max_memory_reserved() / 2**20 if torch.cuda.is_available() else None
print(json.dumps({"img_s": rate, "first": first, "mib": mib}))
"""


def reference_rows(ctx: Context, reference: Path, p2p: dict, cycle: dict, wanted: Callable[[str], bool]) -> list[Row]:
    """The reference trainer (its own train loop, driven for a fixed number of steps) on the same data, with the
    same networks and sizes as our speed rows."""
    rows = []
    for name, model, batch, steps, preset in (
        ("ref_p2p_b1", "pix2pix", 1, ctx.steps["ref_b1"], p2p),
        ("ref_p2p_b16", "pix2pix", ctx.batch16, ctx.steps["ref_b16"], p2p),
        ("ref_cycle_b1", "cycle_gan", 1, ctx.steps["ref_cycle"], cycle),
    ):
        if not wanted(name):
            continue
        args = ["--dataroot", ctx.data, "--name", name, "--model", model, "--batch_size", batch]
        args += ["--gpu_ids", "0" if ctx.cuda else "-1", "--checkpoints_dir", ctx.work / "ref", "--display_id", "-1"]
        args += ["--num_threads", 4, *ctx.flags({k: v for k, v in preset.items() if k != "model"})]
        args += ["--dataset_mode", "unaligned"] if model == "cycle_gan" else ["--dataset_mode", "aligned"]
        launched = time.time()
        done = subprocess.run(
            [sys.executable, "-c", REFERENCE_DRIVER, str(steps), str(max(2, steps // 5)), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=reference,
            env=ctx.env,
        )
        if done.returncode:
            rows.append(show(Row(name, False, note=" ".join(done.stderr.strip().splitlines()[-2:])[:300])))
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        first = round(result["first"] - launched, 1)
        rows.append(show(Row(name, True, round(result["img_s"], 1), first, result["mib"], f"reference {model}")))
    return rows


# ---- path rows, several at once ---------------------------------------------------------------------------------


def weight_diff(a: Path, b: Path) -> float:
    """The largest absolute difference between the generator weights of two checkpoints."""
    wa, wb = load_file(str(a)), load_file(str(b))
    keys = [k for k in wa if k.startswith("net.G") and wa[k].is_floating_point()]
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in keys)


def resume_row(ctx: Context, label: str, options: dict) -> list[Row]:
    """`--continue` halfway in fast mode against an uninterrupted run; then test/translate/export on the device."""
    steps = ctx.steps["path"]
    options = options | {"save_latest_freq": steps // 2, "batch_size": 2}
    whole = train(ctx, f"{label}_whole", options, steps)
    again = train(ctx, f"{label}_again", options, steps)
    half = train(ctx, f"{label}_split", options, steps // 2)
    if not (whole.ok and again.ok and half.ok):
        return [whole, again, half]
    code, tail, _ = pairforge(ctx, "train", "--name", f"{label}_split", "--runs_dir", ctx.work / "runs", "--continue",
                              "--max_steps", steps, "--device", ctx.device, "-q")  # fmt: skip
    if code:
        return [Row(f"{label}_continue", False, note=tail)]
    runs = ctx.work / "runs"
    latest = "checkpoints/latest.safetensors"
    floor = weight_diff(runs / f"{label}_whole" / latest, runs / f"{label}_again" / latest)
    resumed = weight_diff(runs / f"{label}_whole" / latest, runs / f"{label}_split" / latest)
    ok = resumed <= max(2 * floor, RESUME_SLACK)
    note = f"max |dG| resumed vs whole {resumed:.2e}; rerun vs whole {floor:.2e}; {whole.note}"
    return [Row(f"{label}_continue", ok, whole.img_s, whole.first_step_s, whole.peak_mib, note)]


def inference_rows(ctx: Context, run: str) -> list[Row]:
    """`test`, `translate` (checkpoint and exported ONNX) and `export` (ONNX, TorchScript) of a fast-mode run."""
    runs, out = ctx.work / "runs", ctx.work / "inference"
    common = ["--runs_dir", runs]
    rows = []
    code, tail, _ = pairforge(ctx, "test", run, *common, "--device", ctx.device, "-q")
    rows.append(Row("test", code == 0, note=tail if code else "results/test_latest written"))
    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for path in sorted((ctx.data / "testA").iterdir())[:4]:
        Image.open(path).save(inputs / path.name)
    code, tail, _ = pairforge(
        ctx, "translate", run, inputs, out / "ckpt", *common, "--eval", "--device", ctx.device, "-q"
    )
    rows.append(Row("translate", code == 0, note=tail))
    for fmt, suffix in (("onnx", "onnx"), ("torchscript", "pt")):
        model = out / f"g.{suffix}"
        code, tail, _ = pairforge(ctx, "export", run, model, *common, "--format", fmt, "--size", 128, "--eval", "-q")
        if code:
            rows.append(Row(f"export_{fmt}", False, note=tail))
            continue
        rows.append(Row(f"export_{fmt}", *check_export(ctx, model, inputs, out / fmt)))
    return rows


def check_export(ctx: Context, model: Path, inputs: Path, out: Path) -> tuple[bool, None, None, None, str]:
    """An exported ONNX model translates the inputs like the checkpoint did; TorchScript runs on the device."""
    if model.suffix == ".onnx":
        code, tail, _ = pairforge(ctx, "translate", model, inputs, out, "-q")  # --eval is part of the export
        if code:
            return False, None, None, None, tail
        diffs = []
        for path in sorted(out.iterdir()):
            exported = np.asarray(Image.open(path), np.int16)
            direct = np.asarray(Image.open(inputs.parent / "ckpt" / path.name), np.int16)
            diffs.append(int(np.abs(exported - direct).max()))
        worst = max(diffs)
        return worst <= 8, None, None, None, f"ONNX Runtime vs checkpoint on {ctx.device}: max |diff| {worst}/255"
    net = torch.jit.load(str(model), map_location=ctx.device)
    x = torch.rand(1, 3, 128, 128, device=ctx.device) * 2 - 1
    y = net(x)
    ok = tuple(y.shape) == (1, 3, 128, 128) and bool(torch.isfinite(y).all())
    return ok, None, None, None, f"TorchScript on {y.device}: output {tuple(y.shape)}"


FRACTION_WRAPPER = """
import sys, torch
torch.cuda.set_per_process_memory_fraction(float(sys.argv.pop(1)))
from pairforge.cli import main
main()
"""


def eval_rows(ctx: Context) -> list[Row]:
    """FCN-score of 256x256 outputs against 2048x1024 Cityscapes-like labels at native size, with --bf16; then the
    same under a GPU memory cap, where --seg-halo makes eval segment in tiles (same result as untiled fp32)."""
    from tests.train.segnets import export_seg, label_ids, photo, save_png

    root = ctx.work / "eval"
    root.mkdir()
    seg = export_seg(root)[0]
    for i in range(4):
        save_png(root / "fake" / f"f{i}.png", photo(256, 256, i))
        save_png(root / "real" / f"f{i}.png", photo(256, 256, 10 + i))
        save_png(root / "labels" / f"f{i}_gtFine_labelIds.png", label_ids(2048, 1024, i))
    common = ["eval", "--fake", root / "fake", "--real", root / "real", "--labels", root / "labels", "--metrics", "fcn"]
    common += ["--seg-model", seg, "--eval-size", "native", "--workers", 2, "--device", ctx.device, "-q"]
    rows = []
    for name, extra in (("eval_fcn_native_bf16", ["--bf16"]), ("eval_fcn_native_fp32", [])):
        started = time.perf_counter()
        code, tail, _ = pairforge(ctx, *common, *extra, "--out", root / f"{name}.json")
        note = tail if code else f"{time.perf_counter() - started:.1f} s for 4 images at 2048x1024"
        rows.append(Row(name, code == 0, note=note))
    if not ctx.cuda:
        return [*rows, Row("eval_oom_tiles", None, note="skipped: needs a CUDA memory cap")]
    cap = 0.45 * 2**30 / torch.cuda.get_device_properties(0).total_memory
    code, tail, _ = pairforge(ctx, cap, *common, "--batch-size", 4, "--seg-halo", 4, "--out", root / "tiled.json",
                              wrapper=FRACTION_WRAPPER)  # fmt: skip
    if code or not rows[1].ok:
        return [*rows, Row("eval_oom_tiles", False, note=tail)]
    tiled, whole = (json.loads((root / f).read_text())["fcn"] for f in ("tiled.json", "eval_fcn_native_fp32.json"))
    same = tiled["confusion"] == whole["confusion"]
    note = f"capped at 0.45 GiB: tile {tiled['tile']}, confusion {'equal to' if same else 'DIFFERS from'} untiled"
    return [*rows, Row("eval_oom_tiles", same and tiled["tile"] is not None, note=note)]


def pack_row(ctx: Context, options: dict) -> Row:
    """`pairforge run --sweep ... --pack 2`: two training runs side by side, each finished on its own."""
    recipe = ctx.work / "pack.toml"
    train_table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
    recipe.write_text(
        'description = "gpu_check: a --pack 2 sweep"\nruns_dir = "pack-runs"\n\n[prep]\ncommand = "combine"\n'
        f'inputs = ["{ctx.data / "trainA"}", "{ctx.data / "trainB"}"]\noutput = "pack-data"\nsplit = "0.8,0.1,0.1"\n\n'
        f'[train]\n{train_table}\nmax_steps = {ctx.steps["path"]}\ndevice = "{ctx.device}"\n'
    )
    code, tail, _ = pairforge(ctx, "run", recipe, "--sweep", "train.lr=0.0002,0.0001", "--pack", 2, "--until", "train")
    runs = sorted((ctx.work / "pack-runs").glob("*/checkpoints/latest.safetensors"))
    logs = " ".join((p.parents[1] / "pack.log").read_text() for p in runs)
    at_once = next((line for line in tail.splitlines() if "at once" in line), "")
    ok = code == 0 and len(runs) == 2
    return Row("pack_2_sweep", ok, note=(at_once or f"{len(runs)} runs finished") if ok else (tail or logs[-300:]))


PINNED_WRAPPER = """
import pairforge.train.data as data
data.CACHE_GPU_FRACTION = 0.0  # as if the dataset did not fit on the GPU: the cache stays in pinned host memory
from pairforge.cli import main
main()
"""


def path_rows(ctx: Context, small: dict, cycle_small: dict, vgg: Path) -> dict[str, Callable[[], list[Row]]]:
    s = ctx.steps["path"]
    fast = small | {"batch_size": 2}

    def logged(name: str, options: dict, *extra, wrapper=None, check: Callable[[Path], str] | None = None):
        def run() -> list[Row]:
            row = train(ctx, name, options, s, *extra, wrapper=wrapper)
            if row.ok and check:
                problem = check(ctx.work / "runs" / name)
                row.ok, row.note = not problem, problem or row.note
            return [row]

        return run

    def tensorboard_events(run: Path) -> str:
        return "" if list(run.rglob("events.out.tfevents.*")) else "no TensorBoard event file"

    def pinned(run: Path) -> str:
        cache = next(r for r in read_log(run) if r.get("event") == "stop")["cache"]
        return "" if cache.endswith("on cpu") else f"cache not in host memory: {cache}"

    return {
        "p2p_continue": lambda: resume_row(ctx, "p2p", small) + inference_rows(ctx, "p2p_whole"),
        "cycle_continue": lambda: resume_row(ctx, "cycle", cycle_small),
        "wgangp": logged("wgangp", fast | {"gan_mode": "wgangp"}),
        "noise_nc": logged("noise_nc", fast | {"noise_nc": 2}),
        "netD_multiscale": logged("netD_multiscale", fast | {"netD": "multiscale"}),
        "perceptual": logged("perceptual", fast | {"lambda_perceptual": 1.0, "vgg_weights": vgg}),
        "tensorboard": logged("tensorboard", fast, "--logger", "tensorboard", check=tensorboard_events),
        "pinned_host_cache": logged("pinned_host_cache", fast, wrapper=PINNED_WRAPPER, check=pinned),
        "eval": lambda: eval_rows(ctx),
        "pack": lambda: [pack_row(ctx, fast)],
    }


def pytest_row(ctx: Context) -> Row:
    """The training tests with the GPU visible (they choose their devices themselves)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/train", "-q", "-n", "6", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ctx.env,
    )
    lines = done.stdout.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    note = "; ".join([*failed[:4], lines[-1] if lines else done.stderr[-200:]])
    return Row("pytest_tests_train", done.returncode == 0, note=f"{note} ({time.perf_counter() - started:.0f} s)")


# ---- report -----------------------------------------------------------------------------------------------------


def targets(rows: list[Row]) -> list[str]:
    """The issue-22 targets, from the rows that measure them."""
    by = {r.name: r for r in rows}

    def ratio(ours: str, ref: str) -> str:
        a, b = by.get(ours), by.get(ref)
        if not (a and b and a.img_s and b.img_s):
            return "n/a"
        return f"{a.img_s / b.img_s:.2f}x"

    def first(name: str) -> str:
        row = by.get(name)
        return f"{row.first_step_s} s" if row and row.first_step_s is not None else "n/a"

    return [
        f"pix2pix b1 vs reference: {ratio('p2p_fast_b1_cold', 'ref_p2p_b1')} (target >= 5x)",
        f"pix2pix b16 vs reference: {ratio('p2p_fast_b16', 'ref_p2p_b16')} (target >= 4x)",
        f"CycleGAN b1 vs reference: {ratio('cycle_fast_b1_cold', 'ref_cycle_b1')} (target >= 3x)",
        f"first step, pix2pix: cold {first('p2p_fast_b1_cold')}, warm {first('p2p_fast_b1_warm')} (targets 60 s, 20 s)",
        f"first step, CycleGAN: cold {first('cycle_fast_b1_cold')}, warm {first('cycle_fast_b1_warm')}",
        f"fast vs eager held-out L1: {by['fast_vs_eager_l1'].note if 'fast_vs_eager_l1' in by else 'n/a'} (<= 5%)",
    ]


def print_table(rows: list[Row], device_name: str) -> None:
    print(f"\npairforge GPU check on {device_name}")
    print(f"{'path':<22} {'result':<7} {'img/s':>8} {'1st step s':>10} {'peak MiB':>9}  note")
    for r in rows:
        result = "skip" if r.ok is None else ("pass" if r.ok else "FAIL")
        cells = [f"{v:>{w}}" if v is not None else f"{'-':>{w}}" for v, w in ((r.img_s, 8), (r.first_step_s, 10))]
        peak = f"{r.peak_mib:>9,.0f}" if r.peak_mib else f"{'-':>9}"
        print(f"{r.name:<22} {result:<7} {cells[0]} {cells[1]} {peak}  {r.note}")
    print("\nissue-22 targets:")
    for line in targets(rows):
        print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny networks and few steps (a CPU check, for CI)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--reference", type=Path, help="a checkout of pytorch-CycleGAN-and-pix2pix to time beside")
    parser.add_argument("--workdir", type=Path, help="work here and keep the files (default: a temporary folder)")
    parser.add_argument("--parallel", type=int, default=None, help="path rows at once (default: 4 on a GPU, else 2)")
    parser.add_argument("--only", default="speed,reference,paths,tests", help="which groups to run")
    parser.add_argument("--rows", help="only these rows (comma-separated names as in the table; pytest for tests)")
    parser.add_argument("--json-out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()

    device = args.device if args.device != "auto" else ("cuda:0" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    groups = set(args.only.split(","))
    names = set(args.rows.split(",")) if args.rows else None

    def wanted(name: str) -> bool:
        return names is None or name in names

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "data"
        make_dataset(data, 128 if args.tiny else 256, 16 if args.tiny else 256, 4 if args.tiny else 32)
        vgg = work / "vgg16.pth"
        torch.save(__import__("torchvision").models.vgg16().state_dict(), vgg)  # random weights: nothing downloaded
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        ctx = Context(work, data, device, cuda, TINY_STEPS if args.tiny else STEPS, 4 if args.tiny else 16,
                      env | {"TORCHINDUCTOR_CACHE_DIR": str(work / "cache-warm")})  # fmt: skip
        p2p, small = (TINY, TINY) if args.tiny else (FULL, SMALL)
        cycle, cycle_small = (CYCLE_TINY, CYCLE_TINY) if args.tiny else (CYCLE, CYCLE_SMALL)
        started, rows = time.perf_counter(), []
        if "paths" in groups:  # first: the proof that every path works; then the timings, alone on the GPU
            jobs = [job for name, job in path_rows(ctx, small, cycle_small, vgg).items() if wanted(name)]
            with ThreadPoolExecutor(args.parallel or (4 if cuda else 2)) as pool:
                futures = [pool.submit(lambda job=job: [show(row) for row in job()]) for job in jobs]
                test_row = pytest_row(ctx) if cuda and "tests" in groups and wanted("pytest") else None
                rows += [row for future in futures for row in future.result()]
            rows += [show(test_row)] if test_row else []
        if "speed" in groups:
            rows += speed_rows(ctx, p2p, cycle, wanted)
        if args.reference and "reference" in groups:
            rows += reference_rows(ctx, args.reference.resolve(), p2p, cycle, wanted)
        seconds = time.perf_counter() - started
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print_table(rows, name)
    print(f"\n{len(rows)} rows in {seconds:.0f} s")
    result = {"benchmark": "gpu_check", "device": name, "tiny": args.tiny, "seconds": round(seconds, 1)}
    result["rows"] = [asdict(r) for r in rows]
    result["targets"] = targets(rows)
    print(json.dumps(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
