"""`pairforge run --variants/--sweep --pack`: packed runs equal solo runs, fail alone, expand grids, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pairforge.demo import write_raw
from pairforge.recipes import RECIPES_DIR

SHORT = [
    "--set",
    "train.n_epochs=1",
    "--set",
    "train.n_epochs_decay=0",
    "--set",
    "train.ndf=4",
    "--set",
    "train.max_dataset_size=8",
]
ONE_STEP = ["--set", "train.max_steps=1"]
VARIANTS = """
[variants.a]
train = { lr = 0.0002 }

[variants.b]
train = { lr = 0.0001, ngf = 8 }

[variants.bad]
train = { lr = -1.0 }
"""


def recipe(tmp_path: Path, runs_dir: str) -> Path:
    """The demo recipe with three variants (one of which cannot train), writing runs under `runs_dir`."""
    text = (RECIPES_DIR / "demo.toml").read_text().replace('runs_dir = "demo-out/runs"', f'runs_dir = "{runs_dir}"')
    path = tmp_path / f"{runs_dir}.toml"
    path.write_text(text + VARIANTS)
    return path


@pytest.fixture
def raw(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_raw(tmp_path / "raw" / "demo")
    return ["--data-root", tmp_path / "raw", *SHORT]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "latest.safetensors")


def test_packed_runs_equal_solo_runs_and_resume_alone(tmp_path, cli, raw):
    packed = recipe(tmp_path, "packed")
    result = cli("run", packed, "--variants", "a,b", "--pack", "2", "--until", "test", *raw)
    assert result.code == 0, result.err
    assert "packed_a" in result.err and "packed_b" in result.err and "failed" not in result.err
    solo = recipe(tmp_path, "solo")
    for variant in ("a", "b"):
        assert cli("run", solo, "--variant", variant, "--until", "train", *raw).code == 0
        one, alone = weights(tmp_path / "packed" / f"packed_{variant}"), weights(tmp_path / "solo" / f"solo_{variant}")
        nets = [k for k in one if k.startswith("net.")]  # G and D
        assert nets and all(torch.allclose(one[k].double(), alone[k].double(), atol=1e-4) for k in nets)
    config_b = json.loads((tmp_path / "packed" / "packed_b" / "config.json").read_text())
    assert config_b["lr"] == 0.0001 and config_b["ngf"] == 8
    assert (tmp_path / "packed" / "packed_a" / "results" / "test_latest" / "metrics.json").is_file()

    record = tmp_path / "packed" / "packed_a" / "stages" / "train.json"
    state = json.loads(record.read_text())
    record.write_text(json.dumps(state | {"status": "started"}))  # as if the pack had been killed mid-training
    again = cli("run", packed, "--variants", "a,b", "--pack", "2", "--until", "test", *raw)
    assert again.code == 0, again.err
    log_a = (tmp_path / "packed" / "packed_a" / "pack.log").read_text()
    log_b = (tmp_path / "packed" / "packed_b" / "pack.log").read_text()
    assert "--continue" in log_a and "train: skipped" in log_b


def test_a_failing_run_does_not_stop_the_others(tmp_path, cli, raw):
    args = ["--variants", "a,bad", "--pack", "2", "--until", "train", *ONE_STEP]
    result = cli("run", recipe(tmp_path, "runs"), *args, *raw)
    assert result.code == 1
    assert "error: 1 of 2 runs failed: runs_bad (see <run>/pack.log)" in result.err
    assert "--lr -1.0: Input should be greater than 0" in (tmp_path / "runs" / "runs_bad" / "pack.log").read_text()
    assert (tmp_path / "runs" / "runs_a" / "checkpoints" / "latest.safetensors").is_file()


def test_sweep_expands_to_the_grid_with_its_options(tmp_path, cli, raw):
    path = recipe(tmp_path, "sweep")
    args = [
        "--sweep",
        "train.lr=0.0002,0.0001",
        "--sweep",
        "train.ngf=8,16",
        "--until",
        "train",
        "--pack",
        "2",
        *ONE_STEP,
    ]
    result = cli("run", path, *args, *raw)
    assert result.code == 0, result.err
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir())
    assert runs == ["sweep_lr0.0001_ngf16", "sweep_lr0.0001_ngf8", "sweep_lr0.0002_ngf16", "sweep_lr0.0002_ngf8"]
    for run in runs:
        config = json.loads((tmp_path / "sweep" / run / "config.json").read_text())
        assert run == f"sweep_lr{config['lr']}_ngf{config['ngf']}" and config["ndf"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "lr=1,2"], "--sweep 'lr=1,2': expected STAGE.KEY=V1,V2"),
        (["--pack", "0"], "--pack '0': expected auto or a number of runs >= 1"),
        (["--variant", "a", "--variants", "all"], "--variant and --variants: give one of them"),
        (["--variants", "a,nope"], "no variant 'nope'; variants: a, b, bad"),
    ],
)
def test_pack_option_errors_are_one_line(tmp_path, cli, raw, args, message):
    result = cli("run", recipe(tmp_path, "runs"), *args, *raw)
    assert result.code == 2 and message in result.err
