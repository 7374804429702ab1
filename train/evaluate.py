"""`pairforge test` and `translate`: run a trained generator; write outputs, an HTML page and metrics.

Any size: images run at their own size, one per batch. The generator needs sides divisible by its size multiple
(256 for unet_256, 4 for ResNets), so each input is padded (reflect) up to the next valid size and the output is
cropped back: it has exactly the input's size and pixel grid, with no stretching and no shift. `--test_size N|WxH`
resizes inputs (and targets) first, as the reference's test did with --crop_size; `translate` then resizes each
output back to its input's size. Data prepared by `pairforge prep` is already at the training scale, so the
native size is the default.

Any type: inputs and targets keep their dtype and channels (`pixels.py`); outputs are written in the target's own
format (16-bit single-channel depth in, 16-bit single-channel depth out, in the same units), using the codings
the run recorded. G stays in training mode as in the reference (BatchNorm uses the image's own statistics,
dropout stays on: stochastic outputs, seeded by --seed); `eval_mode` switches to running statistics and no
dropout; `dropout` forces dropout on or off.

Metrics compare the output with the target as written to disk. 8-bit targets: L1 in [0, 1] units, PSNR in dB
(capped at 100 dB for identical images) and SSIM (Gaussian window, sigma 1.5: Wang et al. 2004) from scikit-image.
16-bit and float targets: MAE and RMSE in the data's units (metres for prep's depth), and for depth abs-rel and
delta < 1.25, over the valid pixels only (target > 0, and `<phase>/B_valid/<key>.png` > 0 where it exists).

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
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from pairforge.errors import UsageError
from pairforge.train import checkpoints
from pairforge.train.codings import Coding, Codings
from pairforge.train.config import TrainConfig, make_config, size_multiple
from pairforge.train.data import find_pairs, find_unaligned, read_pair, to_tensor
from pairforge.train.models import generate, make_generator
from pairforge.train.networks import build_generator
from pairforge.train.pixels import read_array, read_image, resize_array, write_array
from pairforge.train.runlog import RunDir, write_atomic

PSNR_CAP = 100.0
VALID_DIR = "B_valid"
"""Where prep's depth datasets keep validity masks: `<phase>/B_valid/<key>.png`, 255 = measured."""


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
    size: tuple[int, int] | None = None
    """--test_size: (width, height) inputs are resized to first; None = their own size."""

    @property
    def codings(self) -> Codings:
        """How the run's stored values map to [-1, 1] (a reference .pth: 8-bit images)."""
        return self.cfg.codings or Codings()

    def seed(self, seed: int) -> None:
        """Seed test-time dropout and noise."""
        torch.manual_seed(seed)

    def sized(self, image: np.ndarray, coding: Coding) -> np.ndarray:
        """`image` at --test_size, or as it is."""
        return resize_array(image, self.size, coding) if self.size else image

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) input in the input's stored dtype, any size -> output in the output's dtype, same size."""
        codings = self.codings
        inputs = self._tensor(image, codings.input)
        multiple = size_multiple(self.cfg.netG)
        output = run_padded(lambda x: generate(self.net, x, self.cfg.noise_nc), inputs, multiple)
        return codings.output.decode(output[0])

    @torch.no_grad()
    def cycle(self, image: np.ndarray, backward: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """CycleGAN: (translated, reconstructed) of an input-domain image (output-domain with `backward`)."""
        first, second = (self.back, self.net) if backward else (self.net, self.back)
        codings = self.codings.swapped() if backward else self.codings
        multiple = size_multiple(self.cfg.netG)
        fake = run_padded(first, self._tensor(image, codings.input), multiple)
        return codings.output.decode(fake[0]), codings.input.decode(run_padded(second, fake, multiple)[0])

    def _tensor(self, image: np.ndarray, coding: Coding) -> torch.Tensor:
        return coding.encode(to_tensor(image)[None].to(self.device))


def run_padded(net, inputs: torch.Tensor, multiple: int) -> torch.Tensor:
    """net(inputs) for any (H, W): pad right and bottom (reflect, or replicate where the pad exceeds the image)
    up to multiples of `multiple`, run, crop back to (H, W)."""
    height, width = inputs.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        inputs = F.pad(inputs, (0, pad_w, 0, pad_h), mode=mode)
    return net(inputs)[..., :height, :width]


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
        from pairforge.train.onnx_model import load_onnx

        return load_onnx(Path(source), options, eval_mode, dropout)  # type: ignore[return-value]
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
        codings = cfg.codings.swapped() if cfg.codings else None
        cfg = cfg.model_copy(update={"input_nc": cfg.output_nc, "output_nc": cfg.input_nc, "codings": codings})
    return nets[0], nets[1], cfg


def image_metrics(output: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """L1 (in [0, 1] units), PSNR (dB, capped) and SSIM of two uint8 (H, W, C) images of the same shape."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    diff = output.astype(np.float64) - target.astype(np.float64)
    psnr = PSNR_CAP if not diff.any() else min(PSNR_CAP, peak_signal_noise_ratio(target, output, data_range=255))
    ssim = None
    if min(output.shape[:2]) >= 11:  # the Gaussian window is 11x11
        ssim = structural_similarity(
            target,
            output,
            data_range=255,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    return {"l1": float(np.abs(diff).mean() / 255), "psnr": float(psnr), "ssim": None if ssim is None else float(ssim)}


def unit_metrics(output: np.ndarray, target: np.ndarray, coding: Coding, valid: np.ndarray) -> dict:
    """Errors in the data's units over the `valid` pixels: MAE and RMSE; for depth also abs-rel and the share of
    pixels with max(pred/true, true/pred) < 1.25 (delta1)."""
    out, tgt = (a.astype(np.float64)[valid] / coding.per_unit for a in (output, target))
    if not tgt.size:
        return {"mae": None, "rmse": None, "valid_pixels": 0}
    diff = out - tgt
    row = {"mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff**2).mean())), "valid_pixels": int(tgt.size)}
    if coding.invalid_zero:
        ratio = np.maximum(out, 1e-6) / tgt
        row |= {
            "abs_rel": float((np.abs(diff) / tgt).mean()),
            "delta1": float((np.maximum(ratio, 1 / ratio) < 1.25).mean()),
        }
    return row


def score(output: np.ndarray, target: np.ndarray, coding: Coding, mask: Path | None) -> dict:
    """The metrics of one output: 8-bit image metrics, or errors in units over the valid pixels."""
    if coding.dtype == "uint8":
        return image_metrics(output, target)
    valid = np.ones(target.shape, bool)
    if coding.invalid_zero:
        valid &= target > 0
    if mask is not None and mask.is_file():
        valid &= read_array(mask)[:, :, :1] > 0
    return unit_metrics(output, target, coding, valid)


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
    codings, direction = gen.codings, gen.cfg.direction
    masks = Path(dataroot) / phase / VALID_DIR if direction == "AtoB" else None
    gen.seed(seed)
    rows, suffixes = [], {}
    task = progress.add_task(f"test {phase}", total=len(files), rate="") if progress else None
    for i, key in enumerate(files.keys):
        inp, tgt = read_pair(files, i, direction, gen.cfg.input_nc, gen.cfg.output_nc)
        codings.input.check(inp, files.a[i])
        codings.output.check(tgt, files.b[i])
        inp, tgt = gen.sized(inp, codings.input), gen.sized(tgt, codings.output)
        output = gen(inp)
        for suffix, array in (("real_A", inp), ("fake_B", output), ("real_B", tgt)):
            suffixes[suffix] = write_array(results / "images" / f"{key}_{suffix}.png", array).suffix
        mask = masks / f"{key}.png" if masks and not gen.size else None
        rows.append({"key": key, **score(output, tgt, codings.output, mask)})
        if progress:
            progress.advance(task)
    names = [name for name in rows[0] if name not in ("key", "valid_pixels")]
    metrics = {
        "checkpoint": str(gen.checkpoint),
        "dataroot": str(dataroot),
        "phase": phase,
        "direction": direction,
        "count": len(rows),
        "unit": codings.output.unit or ("8-bit" if codings.output.dtype == "uint8" else "value"),
        **{name: _mean(rows, name) for name in names},
        "images": rows,
    }
    write_atomic(results / "metrics.json", json.dumps(metrics, indent=2).encode())
    write_atomic(results / "index.html", _index_html(metrics, names, suffixes).encode())
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
    gen.seed(seed)
    codings = gen.codings
    sides = [
        (
            "A",
            files.a_keys,
            files.a,
            (gen.cfg.input_nc, "--input_nc"),
            codings.input,
            False,
            ("real_A", "fake_B", "rec_A"),
        ),
        (
            "B",
            files.b_keys,
            files.b,
            (gen.cfg.output_nc, "--output_nc"),
            codings.output,
            True,
            ("real_B", "fake_A", "rec_B"),
        ),
    ]
    task = progress.add_task(f"test {phase}", total=len(files.a) + len(files.b), rate="") if progress else None
    rows: dict[str, list[str]] = {"A": [], "B": []}
    suffixes: dict[str, str] = {}
    for side, keys, paths, channels, coding, backward, names in sides:
        for key, path in zip(keys, paths, strict=True):
            image = read_image(path, *channels)
            coding.check(image, path)
            image = gen.sized(image, coding)
            for name, array in zip(names, (image, *gen.cycle(image, backward)), strict=True):
                suffixes[name] = write_array(results / "images" / f"{key}_{name}.png", array).suffix
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
    write_atomic(results / "index.html", _cycle_html(metrics, rows, suffixes).encode())
    return metrics


def _cycle_html(metrics: dict, rows: dict[str, list[str]], suffixes: dict[str, str]) -> str:
    """Two tables: A | G_A(A) | G_B(G_A(A)), then B | G_B(B) | G_A(G_B(B))."""
    body = f"<h1>{html.escape(metrics['phase'])}: {metrics['count_A']} A and {metrics['count_B']} B images</h1>"
    body += f"<p>{html.escape(metrics['checkpoint'])} ({metrics['direction']})</p>"
    for side, names, title in (
        ("A", ("real_A", "fake_B", "rec_A"), "A &rarr; B &rarr; A"),
        ("B", ("real_B", "fake_A", "rec_B"), "B &rarr; A &rarr; B"),
    ):
        body += f"<h2>{title}</h2><table><tr><th>key</th>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
        for key in rows[side]:
            body += _image_row(key, names, suffixes) + "</tr>"
        body += "</table>"
    return _page(f"{metrics['phase']} results", body)


def _mean(rows: list[dict], name: str) -> float | None:
    values = [row[name] for row in rows if row.get(name) is not None]
    return round(float(np.mean(values)), 6) if values else None


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _index_html(metrics: dict, names: list[str], suffixes: dict[str, str]) -> str:
    """One row per image: input | output | target, with its metrics."""
    summary = ", ".join(f"{name} {_fmt(metrics[name], 4)}" for name in names)
    head = (
        f"<h1>{html.escape(metrics['phase'])}: {metrics['count']} images</h1>"
        f"<p>{html.escape(metrics['checkpoint'])} ({metrics['direction']}) &mdash; {summary} ({metrics['unit']})</p>"
    )
    rows = []
    for row in metrics["images"]:
        scores = "<br>".join(f"{name} {_fmt(row.get(name), 4)}" for name in names)
        rows.append(_image_row(row["key"], ("real_A", "fake_B", "real_B"), suffixes) + f"<td>{scores}</td></tr>")
    table = "<table><tr><th>key</th><th>input</th><th>output</th><th>target</th><th>metrics</th></tr>"
    return _page(f"{metrics['phase']} results", head + table + "".join(rows) + "</table>")


def _image_row(key: str, names: tuple[str, ...], suffixes: dict[str, str]) -> str:
    """`<tr>` with the key and one image per name (the closing `</tr>` is the caller's)."""
    key = html.escape(key)
    return f"<tr><td>{key}</td>" + "".join(f'<td><img src="images/{key}_{n}{suffixes[n]}"></td>' for n in names)


def _page(title: str, body: str) -> str:
    style = "body{font-family:sans-serif} td{padding:4px;vertical-align:top} img{max-width:256px}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
