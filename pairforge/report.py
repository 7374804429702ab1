"""`runs/<name>/report.html`: the recipe, the dataset, loss curves, metrics and test samples of one run.

It reads only files: the run's `config.json`, `log.jsonl`, `results/*/metrics.json` and images, `recipe.toml`
(copied there by `pairforge run`) and the dataset's `manifest.json`.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

SAMPLE_ROWS = 8


def write_report(run: Path) -> Path:
    """Write `<run>/report.html` (and the loss plot beside it); returns its path."""
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
        " img.sample{width:200px} pre{background:#f4f4f4;padding:8px;overflow:auto}"
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
    manifest = _json(dataroot / "manifest.json") if dataroot else None
    if manifest is None:
        return f"<h2>Dataset</h2><p>{html.escape(str(dataroot))} (no manifest)</p>"
    counts = [[split, n] for split, n in manifest.get("counts", {}).items()]
    reasons = Counter(r["kind"] for r in manifest.get("rejected", []))
    rejected = _table(["rejected because", "inputs"], [[k, n] for k, n in reasons.most_common()]) if reasons else ""
    return (
        f"<h2>Dataset</h2><p>{html.escape(str(dataroot))}: layouts {', '.join(manifest.get('layouts', []))}</p>"
        + _table(["split", "pairs"], counts)
        + rejected
    )


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

    fig, ax = plt.subplots(figsize=(9, 4))
    for name in names:
        ax.plot([r["step"] for r in records if name in r], [r[name] for r in records if name in r], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run / "report_losses.png", dpi=90)
    plt.close(fig)
    return "<h2>Losses</h2><img src='report_losses.png' alt='loss curves'>"


def _metrics_section(run: Path) -> str:
    rows = []
    for path in sorted((run / "results").glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        rows.append([path.parent.name, *(f"{k} {v:.4g}" for k, v in scalars.items())])
    return "<h2>Metrics</h2>" + (_table(["results", "values"], [[r[0], ", ".join(r[1:])] for r in rows]) if rows
                                 else "<p>no results yet (run the test stage)</p>")  # fmt: skip


def _samples_section(run: Path) -> str:
    folders = sorted((run / "results").glob("*/images"))
    if not folders:
        return ""
    images = folders[-1]
    keys = sorted({p.name.rsplit("_", 2)[0] for p in images.glob("*_fake_B.png")})[:SAMPLE_ROWS]
    rows = []
    for key in keys:
        sources = [
            (images / f"{key}_{side}.png").relative_to(run).as_posix() for side in ("real_A", "fake_B", "real_B")
        ]
        cells = "".join(f"<td><img class='sample' src='{html.escape(src)}'></td>" for src in sources)
        rows.append(f"<tr><td>{html.escape(key)}</td>{cells}</tr>")
    head = "<tr><th>key</th><th>input</th><th>output</th><th>target</th></tr>"
    return f"<h2>Test samples ({images.parent.name})</h2><table>{head}{''.join(rows)}</table>"
