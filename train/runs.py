"""`pairforge runs`: what is in `runs/`, read from each run's config.json, log.jsonl and results/*/metrics.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pairforge.train.runlog import RunDir


def _records(log: Path) -> list[dict]:
    """The readable lines of a log.jsonl (a line cut off by a crash is skipped)."""
    if not log.is_file():
        return []
    records = []
    for line in log.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _status(records: list[dict], total_epochs: int) -> str:
    """done, stopped (--max_steps or Ctrl-C after a checkpoint), failed (NaN/inf loss), running or interrupted."""
    events = [r for r in records if "event" in r]
    if not events:
        return "not started"
    last = events[-1]["event"]
    if last == "nonfinite":
        return "failed: non-finite loss"
    if last == "stop":
        return "done" if events[-1].get("epochs", 0) >= total_epochs else "stopped"
    return "running or interrupted"


def _best(run: RunDir) -> dict[str, dict]:
    """The best L1 (lowest), PSNR and SSIM (highest) over the run's test results, with where each came from."""
    best: dict[str, dict] = {}
    for path in sorted(run.results.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        for name, better in (("l1", min), ("psnr", max), ("ssim", max)):
            value = metrics.get(name)
            if value is None:
                continue
            if name not in best or better(value, best[name]["value"]) != best[name]["value"]:
                best[name] = {"value": value, "results": path.parent.name}
    return best


def describe(root: Path) -> dict:
    """One run's dataset, model, progress, status and best metrics."""
    run = RunDir(root)
    try:
        cfg = json.loads(run.config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {"run": root.name, "status": f"unreadable config.json ({exc})", "best": {}}
    records = _records(run.log)
    steps = [r for r in records if "step" in r and "event" not in r]
    last = steps[-1] if steps else {}
    total = cfg.get("n_epochs", 0) + cfg.get("n_epochs_decay", 0)
    updated = max((p.stat().st_mtime for p in (run.log, run.config) if p.is_file()), default=0)
    return {
        "run": root.name,
        "dataset": Path(cfg["dataroot"]).name if cfg.get("dataroot") else "",
        "model": f"{cfg.get('model', 'pix2pix')} {cfg.get('netG', '')}".strip(),
        "steps": last.get("step", 0),
        "epoch": f"{last.get('epoch', 0)}/{total}",
        "status": _status(records, total),
        "best": _best(run),
        "updated": datetime.fromtimestamp(updated, UTC).isoformat(timespec="seconds"),
    }


def list_runs(runs_dir: Path) -> list[dict]:
    """Every run folder (one with config.json) under `runs_dir`, by name."""
    if not runs_dir.is_dir():
        return []
    return [describe(p) for p in sorted(runs_dir.iterdir()) if (p / "config.json").is_file()]


def best_text(best: dict[str, dict]) -> str:
    """`PSNR 24.1 dB, SSIM 0.81, L1 0.052 (test_latest)`, or `-` before any test."""
    if not best:
        return "-"
    parts = [
        f"{label} {best[name]['value']:{fmt}}{unit}"
        for name, label, fmt, unit in (
            ("psnr", "PSNR", ".2f", " dB"),
            ("ssim", "SSIM", ".3f", ""),
            ("l1", "L1", ".4f", ""),
        )
        if name in best
    ]
    sources = sorted({b["results"] for b in best.values()})
    return f"{', '.join(parts)} ({', '.join(sources)})"
