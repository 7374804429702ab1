"""The demo recipe end to end (prep -> train -> test -> report), then skip, force and resume behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pairforge.demo import write_raw
from pairforge.recipes import RECIPES_DIR, load
from pairforge.run import build_stages, decide, run_dir

SHORT = ["--set", "train.n_epochs=2", "--set", "train.n_epochs_decay=1", "--set", "train.max_dataset_size=8"]


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_raw(tmp_path / "raw" / "demo")
    return ["run", RECIPES_DIR / "demo.toml", "--data-root", tmp_path / "raw", *SHORT]


def stage_records(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (folder / "stages").glob("*.json")}


def test_demo_recipe_runs_end_to_end_then_skips_everything(demo, cli, tmp_path):
    first = cli(*demo)
    assert first.code == 0, first.err
    run = tmp_path / "demo-out" / "runs" / "demo"
    report = (run / "report.html").read_text()
    assert "Dataset" in report and "corrupt image" in report and "no matching" in report
    assert "src='runs/" not in report and "src='results/" not in report  # every image is embedded
    assert report.count("src='data:image/png;base64,") >= 1 + 1 + 3  # losses, a training sample, a test row
    assert "alt='loss curves by training step, one panel per scale: D_" in report
    metrics = json.loads((run / "results" / "test_latest" / "metrics.json").read_text())
    counts = json.loads((tmp_path / "demo-out" / "datasets" / "gray2colour" / "manifest.json").read_text())["counts"]
    assert metrics["count"] == counts["test"] > 5 and metrics["psnr"] > 5
    assert "baseline output = input" in report
    records = stage_records(run)
    assert {name: r["status"] for name, r in records.items()} == dict.fromkeys(
        ["prep", "train", "test", "report"], "done"
    )
    checkpoint = (run / "checkpoints" / "latest.safetensors").read_bytes()

    second = cli(*demo)
    assert second.code == 0, second.err
    assert second.err.count("skipped (unchanged since") == 4
    assert (run / "checkpoints" / "latest.safetensors").read_bytes() == checkpoint  # no work done

    changed = cli(*demo, "--set", "train.lr=0.0001", "--until", "train", "--dry-run")
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in changed.out.splitlines() if line.startswith("│")]
    actions = {row[0]: row[1] for row in cells if row[0]}  # stage -> action; wrapped lines have no stage
    assert actions["prep"] == "skip" and actions["train"] == "rebuild"

    retrained = cli(*demo, "--set", "train.lr=0.0001")  # a new checkpoint: test and report must follow it
    assert retrained.code == 0, retrained.err
    assert retrained.err.count("skipped (unchanged since") == 1  # prep only
    assert json.loads((run / "results" / "test_latest" / "metrics.json").read_text()) != metrics


def test_interrupted_training_resumes_with_continue(demo, cli, tmp_path):
    assert cli(*demo, "--until", "train").code == 0
    loaded = load(RECIPES_DIR / "demo.toml", sets=[s for s in SHORT if s != "--set"], data_root=tmp_path / "raw")
    folder = run_dir(loaded)
    record_path = folder / "stages" / "train.json"
    record = json.loads(record_path.read_text())
    record["status"] = "started"  # as if the process had been killed mid-training
    record_path.write_text(json.dumps(record))
    train = next(s for s in build_stages(loaded) if s.name == "train")
    decision = decide(train, folder, force=False)
    assert decision.action == "resume" and decision.argv[-1] == "--continue"
    forced = decide(train, folder, force=True)
    assert forced.action == "rebuild" and forced.argv[-1] == "--overwrite"
