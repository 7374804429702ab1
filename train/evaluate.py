"""`pairforge test` and `translate`: run a trained generator; write outputs, an HTML page and metrics.

Test time follows the reference: images are resized to the test size (see `data.resize_for_test`), one per batch,
and G stays in training mode (BatchNorm uses the image's own statistics, dropout stays on: stochastic outputs,
seeded by --seed). `eval_mode` switches to running statistics and no dropout; `dropout` forces dropout on or off.
Metrics compare the 8-bit output with the 8-bit target, as written to disk: L1 in [0, 1] units, PSNR in dB
(capped at 100 dB for identical images) and SSIM (Gaussian window, sigma 1.5: Wang et al. 2004) from scikit-image.

CycleGAN runs (`--model cycle_gan`): `test` reads `<phase>A`/`<phase>B` and writes both directions with their
reconstructions (`<key>_real_A`, `_fake_B`, `_rec_A` for A images; `<key>_real_B`, `_fake_A`, `_rec_B` for B
images); there are no targets, so no metrics. `translate --direction AtoB|BtoA` picks G_A or G_B (A and B are
the dataset's folders; a run trained with `--direction BtoA` has them swapped, as the reference does).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress
from torch import nn

from pairforge.errors import UsageError
from pairforge.train import checkpoints
from pairforge.train.config import TrainConfig, make_config
from pairforge.train.data import (
    _open,
    find_pairs,
    find_unaligned,
    list_images,
    read_pair,
    resize_for_test,
    to_chw,
    to_unit_range,
)
from pairforge.train.models import generate, make_generator
from pairforge.train.networks import build_generator
from pairforge.train.runlog import RunDir, save_png, to_image, write_atomic

PSNR_CAP = 100.0


@dataclass
class Generator:
    """A trained G ready to run, with the options it was trained with."""

    net: nn.Module
    cfg: TrainConfig
    checkpoint: Path
    run: RunDir | None
    device: torch.device
    back: nn.Module | None = None
    """CycleGAN: the generator of the other direction (output domain -> input domain)."""

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> np.ndarray:
        """PIL input (already at test size) -> uint8 output image."""
        inputs = to_unit_range(torch.from_numpy(to_chw(image))[None]).to(self.device)
        return to_image(generate(self.net, inputs, self.cfg.noise_nc)[0])

    @torch.no_grad()
    def cycle(self, image: Image.Image, backward: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """CycleGAN: (translated, reconstructed) uint8 images of a PIL input of the input domain (of the
        output domain with `backward`)."""
        first, second = (self.back, self.net) if backward else (self.net, self.back)
        inputs = to_unit_range(torch.from_numpy(to_chw(image))[None]).to(self.device)
        fake = first(inputs)
        return to_image(fake[0]), to_image(second(fake)[0])


def find_checkpoint(source: str, runs_dir: Path, which: str) -> tuple[Path, RunDir | None]:
    """A run folder, a run name under `runs_dir`, or a checkpoint file -> (checkpoint file, its run if any)."""
    path = Path(source)
    if path.is_file():
        if path.suffix not in (".safetensors", ".pth", ".pt"):
            raise UsageError(f"{path}: expected a run folder, a .safetensors checkpoint or a reference .pth file")
        return path, None
    for folder in (path, runs_dir / source):
        if (folder / "checkpoints").is_dir():
            run = RunDir(folder)
            checkpoint = run.checkpoint(which)
            if not checkpoint.is_file():
                raise UsageError(f"{folder}: no checkpoint {checkpoint.name} (--epoch {which})")
            return checkpoint, run
    raise UsageError(f"{source}: no such run folder, run name (under {runs_dir}) or checkpoint file")


def load_generator(
    source: str,
    runs_dir: Path,
    which: str,
    device: torch.device,
    options: dict,
    eval_mode: bool = False,
    dropout: bool | None = None,
) -> Generator:
    """Load G from a pairforge run/checkpoint (its own options, `options` may change test-time ones such as
    --direction), from a reference .pth (architecture from `options`: --netG, --norm, --ngf, ...) or from an
    .onnx file written by `pairforge export` (run with onnxruntime)."""
    if Path(source).suffix == ".onnx":
        from pairforge.train.export import load_onnx

        return load_onnx(Path(source), options, eval_mode, dropout)
    checkpoint, run = find_checkpoint(source, runs_dir, which)
    saved = checkpoints.read_config(checkpoint).model_dump() if checkpoint.suffix == ".safetensors" else {}
    cfg = make_config(**(saved | options))
    back = None
    if cfg.model == "cycle_gan":
        net, back, cfg = _cycle_generators(checkpoint, saved.get("direction", "AtoB"), cfg)
    else:
        net = make_generator(cfg)
        checkpoints.load_generator(checkpoint, net)
    for one in (net, back):
        if one is None:
            continue
        one.to(device).train(not eval_mode)
        for module in one.modules():
            if isinstance(module, nn.Dropout) and dropout is not None:
                module.train(dropout)
    return Generator(net, cfg, checkpoint, run, device, back)


def _cycle_generators(checkpoint: Path, trained: str, cfg: TrainConfig) -> tuple[nn.Module, nn.Module, TrainConfig]:
    """(forward G, backward G, cfg with the channels of the forward direction) of a CycleGAN run: G_A forward
    when `cfg.direction` is the one it was trained with, else G_B. A reference `..._net_G_A.pth` (or `_G_B`)
    is read with its sibling file of the other generator."""
    names = ("G_A", "G_B") if cfg.direction == trained else ("G_B", "G_A")
    channels = {"G_A": (cfg.input_nc, cfg.output_nc), "G_B": (cfg.output_nc, cfg.input_nc)}
    nets = []
    for name in names:
        net = build_generator(cfg.netG, *channels[name], cfg.ngf, cfg.norm, not cfg.no_dropout)
        path = checkpoint
        if checkpoint.suffix != ".safetensors":
            path = checkpoint.with_name(checkpoint.name.replace("G_A", name).replace("G_B", name))
            if not path.is_file():
                raise UsageError(f"{path}: not found (a reference CycleGAN needs latest_net_G_A.pth and _G_B.pth)")
        checkpoints.load_generator(path, net, name)
        nets.append(net)
    if names[0] == "G_B":
        cfg = cfg.model_copy(update={"input_nc": cfg.output_nc, "output_nc": cfg.input_nc})
    return nets[0], nets[1], cfg


def image_metrics(output: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """L1 (in [0, 1] units), PSNR (dB, capped) and SSIM of two uint8 images of the same shape."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    diff = output.astype(np.float64) - target.astype(np.float64)
    psnr = PSNR_CAP if not diff.any() else min(PSNR_CAP, peak_signal_noise_ratio(target, output, data_range=255))
    ssim = None
    if min(output.shape[:2]) >= 11:  # the Gaussian window is 11x11
        channel_axis = -1 if output.ndim == 3 else None
        ssim = structural_similarity(
            target,
            output,
            data_range=255,
            channel_axis=channel_axis,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    return {"l1": float(np.abs(diff).mean() / 255), "psnr": float(psnr), "ssim": None if ssim is None else float(ssim)}


def run_test(
    gen: Generator,
    dataroot: Path | None,
    phase: str,
    results: Path,
    num_test: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict:
    """Translate every pair of `<dataroot>/<phase>`; write images/, index.html and metrics.json to `results`."""
    if gen.back is not None:
        return run_cycle_test(gen, dataroot, phase, results, num_test, seed, progress)
    files = find_pairs(dataroot, phase, num_test)
    torch.manual_seed(seed)
    rows = []
    task = progress.add_task(f"test {phase}", total=len(files), rate="") if progress else None
    for i, key in enumerate(files.keys):
        pair = read_pair(files, i, gen.cfg.direction, gen.cfg.input_nc, gen.cfg.output_nc)
        inp, tgt = (resize_for_test(img, gen.cfg) for img in pair)
        output, target = gen(inp), np.array(tgt)
        save_png(results / "images" / f"{key}_real_A.png", np.array(inp))
        save_png(results / "images" / f"{key}_fake_B.png", output)
        save_png(results / "images" / f"{key}_real_B.png", target)
        rows.append({"key": key, **image_metrics(output, target)})
        if progress:
            progress.advance(task)
    metrics = {
        "checkpoint": str(gen.checkpoint),
        "dataroot": str(dataroot),
        "phase": phase,
        "direction": gen.cfg.direction,
        "count": len(rows),
        **{name: _mean(rows, name) for name in ("l1", "psnr", "ssim")},
        "images": rows,
    }
    write_atomic(results / "metrics.json", json.dumps(metrics, indent=2).encode())
    write_atomic(results / "index.html", _index_html(metrics).encode())
    return metrics


def run_cycle_test(
    gen: Generator,
    dataroot: Path | None,
    phase: str,
    results: Path,
    num_test: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict:
    """CycleGAN: A -> B -> A for every image of `<phase>A`, B -> A -> B for every image of `<phase>B`."""
    files = find_unaligned(dataroot, phase, gen.cfg.direction, num_test)
    torch.manual_seed(seed)
    modes = {1: "L", 3: "RGB"}
    sides = [
        ("A", files.a_keys, files.a, modes[gen.cfg.input_nc], False, ("real_A", "fake_B", "rec_A")),
        ("B", files.b_keys, files.b, modes[gen.cfg.output_nc], True, ("real_B", "fake_A", "rec_B")),
    ]
    task = progress.add_task(f"test {phase}", total=len(files.a) + len(files.b), rate="") if progress else None
    rows: dict[str, list[str]] = {"A": [], "B": []}
    for side, keys, paths, mode, backward, suffixes in sides:
        for key, path in zip(keys, paths, strict=True):
            image = resize_for_test(_open(path, mode), gen.cfg)
            for suffix, array in zip(suffixes, (np.array(image), *gen.cycle(image, backward)), strict=True):
                save_png(results / "images" / f"{key}_{suffix}.png", array)
            rows[side].append(key)
            if progress:
                progress.advance(task)
    metrics = {
        "checkpoint": str(gen.checkpoint),
        "dataroot": str(dataroot),
        "phase": phase,
        "direction": gen.cfg.direction,
        "count": len(rows["A"]) + len(rows["B"]),
        "count_A": len(rows["A"]),
        "count_B": len(rows["B"]),
        "images": [{"key": k, "domain": side} for side in ("A", "B") for k in rows[side]],
    }
    write_atomic(results / "metrics.json", json.dumps(metrics, indent=2).encode())
    write_atomic(results / "index.html", _cycle_html(metrics, rows).encode())
    return metrics


def _cycle_html(metrics: dict, rows: dict[str, list[str]]) -> str:
    """Two tables: A | G_A(A) | G_B(G_A(A)), then B | G_B(B) | G_A(G_B(B))."""
    body = f"<h1>{html.escape(metrics['phase'])}: {metrics['count_A']} A and {metrics['count_B']} B images</h1>"
    body += f"<p>{html.escape(metrics['checkpoint'])} ({metrics['direction']})</p>"
    for side, suffixes, title in (
        ("A", ("real_A", "fake_B", "rec_A"), "A &rarr; B &rarr; A"),
        ("B", ("real_B", "fake_A", "rec_B"), "B &rarr; A &rarr; B"),
    ):
        body += f"<h2>{title}</h2><table><tr><th>key</th>" + "".join(f"<th>{s}</th>" for s in suffixes) + "</tr>"
        for key in rows[side]:
            key = html.escape(key)
            cells = "".join(f'<td><img src="images/{key}_{s}.png"></td>' for s in suffixes)
            body += f"<tr><td>{key}</td>{cells}</tr>"
        body += "</table>"
    return _page(f"{metrics['phase']} results", body)


def translate_folder(
    gen: Generator, in_dir: Path, out_dir: Path, seed: int = 0, progress: Progress | None = None
) -> int:
    """Translate every image in `in_dir` into `<out_dir>/<stem>.png`, resized back to the input's size."""
    if not in_dir.is_dir():
        raise UsageError(f"IN_DIR {in_dir}: folder not found")
    images = list_images(in_dir)
    if not images:
        raise UsageError(f"IN_DIR {in_dir}: no images")
    torch.manual_seed(seed)
    mode = "L" if gen.cfg.input_nc == 1 else "RGB"
    task = progress.add_task("translate", total=len(images), rate="") if progress else None
    for key, path in images.items():
        with Image.open(path) as img:
            image = img.convert(mode)
        output = Image.fromarray(gen(resize_for_test(image, gen.cfg)))
        if output.size != image.size:
            output = output.resize(image.size, Image.Resampling.BICUBIC)
        save_png(out_dir / f"{key}.png", np.array(output))
        if progress:
            progress.advance(task)
    return len(images)


def _mean(rows: list[dict], name: str) -> float | None:
    values = [row[name] for row in rows if row[name] is not None]
    return round(float(np.mean(values)), 6) if values else None


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _index_html(metrics: dict) -> str:
    """One row per image: input | output | target, with its metrics."""
    head = (
        f"<h1>{html.escape(metrics['phase'])}: {metrics['count']} images</h1>"
        f"<p>{html.escape(metrics['checkpoint'])} ({metrics['direction']}) &mdash; L1 {_fmt(metrics['l1'], 4)},"
        f" PSNR {_fmt(metrics['psnr'], 2)} dB, SSIM {_fmt(metrics['ssim'], 4)}</p>"
    )
    rows = []
    for row in metrics["images"]:
        key = html.escape(row["key"])
        cells = "".join(f'<td><img src="images/{key}_{s}.png"></td>' for s in ("real_A", "fake_B", "real_B"))
        scores = f"L1 {_fmt(row['l1'], 4)}<br>PSNR {_fmt(row['psnr'], 2)}<br>SSIM {_fmt(row['ssim'], 4)}"
        rows.append(f"<tr><td>{key}</td>{cells}<td>{scores}</td></tr>")
    table = "<table><tr><th>key</th><th>input</th><th>output</th><th>target</th><th>metrics</th></tr>"
    return _page(f"{metrics['phase']} results", head + table + "".join(rows) + "</table>")


def _page(title: str, body: str) -> str:
    style = "body{font-family:sans-serif} td{padding:4px;vertical-align:top} img{max-width:256px}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
