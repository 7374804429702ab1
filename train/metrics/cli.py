"""`pairforge eval`: score a run's test outputs (or two folders), or compare runs. torch loads inside the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from pairforge.errors import UsageError
from pairforge.extras import require
from pairforge.parsing import parse_choices, parse_list, parse_size

FCN = "FCN-score"
FIDELITY = "FID / KID / IS / LPIPS"
RUN = "Run"
EVAL_MODULES = {"fid": "torch_fidelity", "kid": "torch_fidelity", "is": "torch_fidelity", "lpips": "lpips"}
"""The module each metric needs beyond torch (from the `eval` extra)."""


def eval_command(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(help="A run folder (or name under --runs-dir) after `pairforge test`; with --compare, several."),
    ] = None,
    fake: Annotated[Path | None, typer.Option("--fake", help="Folder of generated images (instead of a run).")] = None,
    real: Annotated[
        Path | None, typer.Option("--real", help="Folder of real images, paired with --fake by stem.")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Folder of gtFine labelIds (<stem>[_gtFine_labelIds].png) for --fake."),
    ] = None,
    results: Annotated[
        str | None, typer.Option("--results", help="Which results/<name> of the run (default: the newest test).")
    ] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Folder that holds the runs.")] = Path("runs"),
    metrics: Annotated[
        str, typer.Option("--metrics", help="Comma-separated: pixel (L1, PSNR, SSIM), fcn, fid, kid, is, lpips.")
    ] = "pixel",
    seg_model: Annotated[
        Path | None,
        typer.Option("--seg-model", help="Segmentation network: TorchScript .pt or ONNX .onnx.", rich_help_panel=FCN),
    ] = None,
    seg_classes: Annotated[
        Literal["cityscapes19"],
        typer.Option("--seg-classes", help="cityscapes19: trainIds via cityscapesscripts.", rich_help_panel=FCN),
    ] = "cityscapes19",
    seg_mean: Annotated[
        str, typer.Option("--seg-mean", help="Per-channel mean, in --seg-scale units.", rich_help_panel=FCN)
    ] = "0.485,0.456,0.406",
    seg_std: Annotated[
        str, typer.Option("--seg-std", help="Per-channel std.", rich_help_panel=FCN)
    ] = "0.229,0.224,0.225",
    seg_scale: Annotated[
        float,
        typer.Option("--seg-scale", help="Pixel range fed to the network: 1 ([0,1]) or 255.", rich_help_panel=FCN),
    ] = 1.0,
    seg_channels: Annotated[
        Literal["RGB", "BGR"],
        typer.Option("--seg-channels", help="Channel order (Caffe FCNs: BGR).", rich_help_panel=FCN),
    ] = "RGB",
    eval_size: Annotated[
        str,
        typer.Option(
            "--eval-size",
            help="N or WxH: images at that size, labels resized NEAREST to it; native: images upsampled to the"
            " labels' resolution (as the original script).",
            rich_help_panel=FCN,
        ),
    ] = "256",
    resize_filter: Annotated[
        Literal["nearest", "bilinear", "bicubic", "lanczos"],
        typer.Option(
            "--resize-filter", help="Image resize filter (PIL; bilinear = scipy.misc.imresize).", rich_help_panel=FCN
        ),
    ] = "bilinear",
    fcn_real: Annotated[
        bool,
        typer.Option("--fcn-real", help="Score the real photos (Table 1's ground-truth row).", rich_help_panel=FCN),
    ] = False,
    seg_tile: Annotated[
        int | None,
        typer.Option("--seg-tile", help="Segment in tiles of this size (less memory).", min=1, rich_help_panel=FCN),
    ] = None,
    seg_halo: Annotated[
        int,
        typer.Option(
            "--seg-halo",
            help="Context pixels around each tile (cover the receptive field); with it, out of memory means tiles.",
            min=0,
            rich_help_panel=FCN,
        ),
    ] = 0,
    inception_weights: Annotated[
        Path | None,
        typer.Option(
            "--inception-weights",
            help="torch-fidelity's Inception (pt_inception-2015-12-05-6726825d.pth).",
            rich_help_panel=FIDELITY,
        ),
    ] = None,
    lpips_net: Annotated[
        Literal["alex", "vgg"], typer.Option("--lpips-net", help="LPIPS backbone.", rich_help_panel=FIDELITY)
    ] = "alex",
    lpips_backbone: Annotated[
        Path | None,
        typer.Option(
            "--lpips-backbone",
            help="torchvision ImageNet weights of --lpips-net (alexnet-owt-7be5be79.pth).",
            rich_help_panel=FIDELITY,
        ),
    ] = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="Compare the eval results of RUNS... in one table.", rich_help_panel=RUN)
    ] = False,
    paper: Annotated[
        Literal["pix2pix-cityscapes"] | None,
        typer.Option("--paper", help="With --compare: add the paper's rows (pix2pix Table 1).", rich_help_panel=RUN),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option("--table", help="With --compare: write PATH.md and PATH.csv.", rich_help_panel=RUN),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="metrics.json to write (default: <run>/results/eval/metrics.json).", rich_help_panel=RUN
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.", min=1, rich_help_panel=RUN)] = 4,
    workers: Annotated[
        int, typer.Option("--workers", help="Processes reading and resizing images.", min=0, rich_help_panel=RUN)
    ] = 2,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=RUN)] = "auto",
    bf16: Annotated[
        bool, typer.Option("--bf16", help="Segment in bfloat16 (TorchScript).", rich_help_panel=RUN)
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar or summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Score generated images: FCN-score (pix2pix Table 1), FID/KID/IS (torch-fidelity), LPIPS, L1/PSNR/SSIM.
    Weights are files given by flag, never downloaded; metrics.json records the protocol, sha256 and versions.

    Examples:

      pairforge eval runs/cityscapes_l1_cgan --metrics fcn --seg-model fcn8s_cityscapes.onnx --eval-size native

      pairforge eval runs/facades_pix2pix --metrics pixel,fid,kid --inception-weights pt_inception-2015-12-05.pth

      pairforge eval --fake out/ --real photos/ --metrics lpips --lpips-backbone alexnet-owt-7be5be79.pth

      pairforge eval --compare runs/cityscapes_l1 runs/cityscapes_l1_cgan --paper pix2pix-cityscapes --table table1
    """
    runs = [_run_folder(r, runs_dir) for r in runs or []]
    if compare:
        _compare(runs, paper, table, quiet)
        return
    require("train", "pairforge eval", ("torch",))
    from pairforge.train.devices import resolve_device
    from pairforge.train.metrics.evaluation import METRICS, EvalOptions, evaluate
    from pairforge.train.metrics.fcn import FcnProtocol
    from pairforge.train.metrics.inputs import from_folders, from_run
    from pairforge.train.runlog import progress_bar, write_atomic

    if (fake is None) == (len(runs) != 1):
        raise UsageError("give one RUN folder, or --fake DIR (with --real DIR for paired metrics); --compare for more")
    inputs = from_run(runs[0], results) if runs else from_folders(fake, real, labels)
    names = parse_choices(metrics, "--metrics", METRICS)
    for name in set(names) & set(EVAL_MODULES):
        require("eval", f"--metrics {name}", (EVAL_MODULES[name],))
    mean, std = parse_list(seg_mean, "--seg-mean", float, 3), parse_list(seg_std, "--seg-std", float, 3)
    if min(std) <= 0:
        raise UsageError(f"--seg-std {seg_std!r}: expected positive values")
    size = None if eval_size == "native" else parse_size(eval_size, "--eval-size")
    protocol = FcnProtocol(size, resize_filter, seg_classes, tuple(mean), tuple(std), seg_scale, seg_channels, fcn_real)
    options = EvalOptions(names, resolve_device(device), protocol, seg_model, seg_tile, seg_halo, inception_weights,
                          lpips_net, lpips_backbone, batch_size, workers, bf16)  # fmt: skip
    with progress_bar(quiet or as_json) as progress:
        result = evaluate(inputs, options, progress)
    out = out or (runs[0] / "results" / "eval" / "metrics.json" if runs else None)
    if out is not None:
        write_atomic(out, json.dumps(result, indent=1).encode())
    summary = {k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    summary |= {"metrics.json": str(out) if out else "-"}
    from pairforge.train.cli import _report

    _report(summary, "eval", quiet, as_json)


def _run_folder(source: Path, runs_dir: Path) -> Path:
    for folder in (source, runs_dir / source):
        if folder.is_dir() or folder.is_file():
            return folder
    raise UsageError(f"{source}: no such run folder or run name (under {runs_dir})")


def _compare(sources: list[Path], paper: str | None, table: Path | None, quiet: bool) -> None:
    from pairforge.train.metrics.compare import csv_text, markdown, rows_of
    from pairforge.train.runlog import write_atomic

    if not sources:
        raise UsageError("--compare: give the runs to compare (RUN folders or metrics.json files)")
    header, rows = rows_of(sources, paper)
    if table is not None:
        write_atomic(table.with_suffix(".md"), markdown(header, rows).encode())
        write_atomic(table.with_suffix(".csv"), csv_text(header, rows).encode())
    if quiet:
        return
    view = Table(*header, title="eval --compare")
    for row in rows:
        view.add_row(*("-" if c is None else (f"{c:.4g}" if isinstance(c, float) else str(c)) for c in row))
    Console().print(view)


def register(app: typer.Typer) -> None:
    """Add `eval` to the root app."""
    app.command("eval")(eval_command)
