"""`runs/<name>/report.html`: the recipe, the dataset, loss curves, metrics and test samples of one run.

It reads only files: the run's `config.json`, `log.jsonl`, `results/*/metrics.json` and images, `recipe.toml`
(copied there by `pairforge run`) and the dataset's `manifest.json`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from pairforge.manifest_lines import MANIFEST_NAME, ManifestLines

SAMPLE_ROWS = 8
SAMPLE_GRIDS = 4
PANEL_RATIO = 5.0


def write_report(run: Path) -> Path:
    """Write `<run>/report.html`, one self-contained file (images embedded); returns its path."""
    config = _json(run / "config.json") or {}
    sections = [
        f"<h1>{html.escape(run.name)}</h1>",
        _recipe_section(run),
        _dataset_section(Path(config["dataroot"]) if config.get("dataroot") else None),
        _losses_section(run),
        _metrics_section(run),
        _samples_section(run),
        f"<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=1))}</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto} td,th{padding:3px 8px;text-align:left}"
        " img.sample{width:200px;image-rendering:pixelated} figure{display:inline-block;margin:4px}"
        " pre{background:#f4f4f4;padding:8px;overflow:auto}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run.name)}</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    path = run / "report.html"
    path.write_text(page)
    return path


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _recipe_section(run: Path) -> str:
    recipe = run / "recipe.toml"
    if not recipe.is_file():
        return ""
    return f"<h2>Recipe</h2><pre>{html.escape(recipe.read_text())}</pre>"


def _dataset_section(dataroot: Path | None) -> str:
    path = dataroot / MANIFEST_NAME if dataroot else None
    if path is None or not path.is_file():
        return f"<h2>Dataset</h2><p>{html.escape(str(dataroot))} (no manifest)</p>"
    lines = ManifestLines(path)  # the header, and the rejected records one at a time (never the items)
    manifest = lines.header
    counts = [[split, n] for split, n in manifest.get("counts", {}).items()]
    reasons = Counter(r["kind"] for r in lines.records("rejected"))
    rejected = _table(["rejected because", "inputs"], [[k, n] for k, n in reasons.most_common()]) if reasons else ""
    return (
        f"<h2>Dataset</h2><p>{html.escape(str(dataroot))}: layouts {', '.join(manifest.get('layouts', []))}</p>"
        + _table(["split", "pairs"], counts)
        + rejected
    )


def _image(data: bytes, alt: str, css: str = "") -> str:
    """An <img> that carries its PNG inside the page (the report is one self-contained file)."""
    source = "data:image/png;base64," + base64.b64encode(data).decode()
    return f"<img{css} src='{source}' alt='{html.escape(alt, quote=True)}'>"


def loss_panels(curves: dict[str, list[float]]) -> list[list[str]]:
    """Loss names grouped by scale: sorted by median, a new panel whenever a curve's median is more than
    PANEL_RATIO times the first of its panel (e.g. pix2pix: D_real, D_fake, G_GAN | G_L1, weighted by 100)."""
    medians = sorted((float(np.median(np.abs(values))) + 1e-12, name) for name, values in curves.items())
    panels: list[list[str]] = []
    low = 0.0
    for median, name in medians:
        if not panels or median > PANEL_RATIO * low:
            panels.append([])
            low = median
        panels[-1].append(name)
    return panels


def _losses_section(run: Path) -> str:
    log = run / "log.jsonl"
    if not log.is_file():
        return ""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    records = [r for r in records if "step" in r and "event" not in r]
    names = sorted({k for r in records for k in r if k.startswith(("G_", "D_", "cycle", "idt", "loss"))})
    if not records or not names:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {name: [r[name] for r in records if name in r] for name in names}
    panels = loss_panels(curves)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for name in panel:
            ax.plot([r["step"] for r in records if name in r], curves[name], label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    alt = "loss curves by training step, one panel per scale: " + "; ".join(", ".join(p) for p in panels)
    return "<h2>Losses</h2>" + _image(buffer.getvalue(), alt) + _training_samples(run)


def _training_samples(run: Path) -> str:
    """Up to SAMPLE_GRIDS of the sample grids written during training (first, last and evenly between)."""
    grids = sorted((run / "samples").glob("*.png"))
    if not grids:
        return ""
    picks = sorted({round(i * (len(grids) - 1) / max(1, SAMPLE_GRIDS - 1)) for i in range(SAMPLE_GRIDS)})
    cells = "".join(
        f"<figure>{_image(grids[i].read_bytes(), f'training sample {grids[i].stem}: input | output | target')}"
        f"<figcaption>{html.escape(grids[i].stem)}</figcaption></figure>"
        for i in picks
    )
    return f"<h3>Samples during training (input | output | target)</h3>{cells}"


def _metrics_section(run: Path) -> str:
    rows, notes = [], []
    for path in sorted((run / "results").glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        rows.append([path.parent.name, ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())])
        baseline = identity_l1(path.parent / "images")
        if baseline is not None and "l1" in scalars:
            rows.append([f"{path.parent.name}: baseline output = input", f"l1 {baseline:.4g}"])
            notes.append(
                f"{path.parent.name}: L1 {scalars['l1']:.4g} against {baseline:.4g} for the trivial baseline that"
                f" returns the input unchanged (lower is better; {scalars['l1'] / baseline:.0%} of the baseline)."
            )
    if not rows:
        return "<h2>Metrics</h2><p>no results yet (run the test stage)</p>"
    return "<h2>Metrics</h2>" + "".join(f"<p>{html.escape(n)}</p>" for n in notes) + _table(["results", "values"], rows)


def identity_l1(images: Path) -> float | None:
    """Mean L1 in [0, 1] units between each test input and its target (`<key>_real_A.png`, `<key>_real_B.png`), as
    `pairforge test` scores outputs; None when the sides are not 8-bit images of one shape."""
    scores = []
    for source in sorted(images.glob("*_real_A.png")):
        with Image.open(source) as a, Image.open(source.with_name(source.name.replace("_real_A", "_real_B"))) as b:
            inp, tgt = np.asarray(a), np.asarray(b)
        if inp.shape != tgt.shape or inp.dtype != np.uint8 or tgt.dtype != np.uint8:
            return None
        scores.append(np.abs(inp.astype(np.float64) - tgt).mean() / 255)
    return float(np.mean(scores)) if scores else None


def _samples_section(run: Path) -> str:
    folders = sorted((run / "results").glob("*/images"))
    if not folders:
        return ""
    images = folders[-1]
    keys = sorted({p.name.rsplit("_", 2)[0] for p in images.glob("*_fake_B.png")})[:SAMPLE_ROWS]
    rows = []
    for key in keys:
        cells = "".join(
            f"<td>{_image((images / f'{key}_{side}.png').read_bytes(), f'{key} {what}', ' class=sample')}</td>"
            for side, what in (("real_A", "input"), ("fake_B", "output"), ("real_B", "target"))
        )
        rows.append(f"<tr><td>{html.escape(key)}</td>{cells}</tr>")
    head = "<tr><th>key</th><th>input</th><th>output</th><th>target</th></tr>"
    return f"<h2>Test samples ({images.parent.name})</h2><table>{head}{''.join(rows)}</table>"
