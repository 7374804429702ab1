"""`pairforge eval --compare`: a Table-1 style table, one row per run (or metrics.json), one column per metric,
printed and written as Markdown and CSV; `--paper pix2pix-cityscapes` adds the paper's rows beside it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pairforge.errors import UsageError

COLUMNS = {
    "fcn_pixel_acc": "per-pixel acc.",
    "fcn_class_acc": "per-class acc.",
    "fcn_class_iou": "class IoU",
    "fid": "FID",
    "kid": "KID",
    "kid_std": "KID std",
    "is": "IS",
    "lpips": "LPIPS",
    "l1": "L1",
    "psnr": "PSNR",
    "ssim": "SSIM",
}
PAPERS = {
    # pix2pix (Isola et al. 2017), Table 1: FCN-scores of Cityscapes labels -> photos
    "pix2pix-cityscapes": [
        ("paper: L1", 0.42, 0.15, 0.11),
        ("paper: GAN", 0.22, 0.05, 0.01),
        ("paper: cGAN", 0.57, 0.22, 0.16),
        ("paper: L1+GAN", 0.64, 0.20, 0.15),
        ("paper: L1+cGAN", 0.66, 0.23, 0.17),
        ("paper: ground truth", 0.80, 0.26, 0.21),
    ],
}


def eval_file(source: Path) -> Path:
    """A metrics.json, or the eval result of a run folder (`results/eval/metrics.json`)."""
    path = source if source.is_file() else source / "results" / "eval" / "metrics.json"
    if not path.is_file():
        raise UsageError(f"--compare {source}: no eval results at {path}; run `pairforge eval {source}` first")
    return path


def rows_of(sources: list[Path], paper: str | None = None) -> tuple[list[str], list[list]]:
    """(header, rows): the metrics any source has, in COLUMNS order; missing values are None."""
    found = []
    for source in sources:
        metrics = json.loads(eval_file(source).read_text())
        name = source.name if source.is_dir() else source.parent.name
        if metrics.get("fcn", {}).get("protocol", {}).get("real"):
            name += " (real photos)"
        found.append((name, metrics))
    if paper is not None:
        found += [(name, dict(zip(list(COLUMNS)[:3], values, strict=True))) for name, *values in PAPERS[paper]]
    keys = [k for k in COLUMNS if any(m.get(k) is not None for _, m in found)]
    return ["run", *(COLUMNS[k] for k in keys)], [[name, *(m.get(k) for k in keys)] for name, m in found]


def _cell(value) -> str:
    return "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    return out.getvalue()
