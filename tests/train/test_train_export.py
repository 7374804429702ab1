"""`pairforge export` to ONNX / TorchScript, `translate` with an .onnx model, and `pairforge runs`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from pairforge.cli import main
from pairforge.errors import UsageError
from pairforge.train import checkpoints
from pairforge.train.config import TrainConfig
from pairforge.train.evaluate import load_generator
from pairforge.train.export import export
from pairforge.train.models import Pix2PixModel
from pairforge.train.translate import translate_folder
from tests.train.conftest import blobs

CPU = torch.device("cpu")


def checkpoint(tmp_path, netG: str, norm: str = "batch"):
    """A tiny generator with weights large enough that its output varies across the image."""
    cfg = TrainConfig(netG=netG, norm=norm, ngf=4, ndf=4, crop_size=128, load_size=128, init_type="xavier", init_gain=1)
    path = tmp_path / f"{netG}_{norm}.safetensors"
    checkpoints.save(path, Pix2PixModel(cfg, CPU), step=1)
    return path


def torch_reference(path, eval_mode: bool, image: np.ndarray) -> np.ndarray:
    """G of the checkpoint in PyTorch, dropout off: [0, 1] float (1, C, H, W) -> same, computed directly."""
    gen = load_generator(str(path), CPU, "latest", CPU, {}, eval_mode, dropout=False)
    with torch.no_grad():
        return ((gen.net(torch.from_numpy(image) * 2 - 1) + 1) / 2).numpy()


def run_exported(path, fmt: str, image: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"input": image})[0]
    with torch.no_grad():
        return torch.jit.load(str(path))(torch.from_numpy(image)).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize(
    ("netG", "norm", "size", "other"),
    [("unet_128", "batch", 128, (256, 128)), ("resnet_6blocks", "instance", 32, (44, 24))],
)
@pytest.mark.parametrize("eval_mode", [False, True])
def test_export_round_trips_at_other_sizes(tmp_path, fmt, netG, norm, size, other, eval_mode):
    source = checkpoint(tmp_path, netG, norm)
    out = tmp_path / f"g.{'onnx' if fmt == 'onnx' else 'pt'}"
    summary = export(str(source), out, fmt, (size, size), eval_mode=eval_mode)
    assert summary["max_diff"] < 1e-4 and out.is_file() and not list(tmp_path.glob(".*tmp*"))
    width, height = other
    image = np.random.default_rng(3).random((2, 3, height, width), dtype=np.float32)
    expected = np.concatenate([torch_reference(source, eval_mode, image[i : i + 1]) for i in range(2)])
    got = run_exported(out, fmt, image)  # a batch of 2: each image as if alone (test runs one per batch)
    assert got.shape == (2, 3, height, width) and expected.std() > 0.01
    assert np.abs(got - expected).max() < 1e-4


def test_half_export_stays_within_its_tolerance(tmp_path):
    source = checkpoint(tmp_path, "resnet_6blocks", "instance")
    summary = export(str(source), tmp_path / "g.pt", "torchscript", (32, 32), half=True)
    assert summary["dtype"] == "float16" and 0 < summary["max_diff"] < 2e-2


def test_export_refuses_sizes_the_generator_cannot_take(tmp_path):
    with pytest.raises(UsageError, match="--size 100x100: --netG unet_128 needs sides divisible by 128"):
        export(str(checkpoint(tmp_path, "unet_128")), tmp_path / "g.onnx", "onnx", (100, 100))
    assert not (tmp_path / "g.onnx").exists()


def test_translate_with_the_onnx_model_equals_translate_with_the_checkpoint(tmp_path):
    source = checkpoint(tmp_path, "unet_128")
    export(str(source), tmp_path / "g.onnx", "onnx", (128, 128))
    (tmp_path / "in").mkdir()
    for i, (w, h) in enumerate([(128, 128), (200, 120)]):
        Image.fromarray(blobs(max(w, h), i)[:h, :w]).save(tmp_path / "in" / f"im{i}.png")
    for name, model, dropout in (("torch", str(source), False), ("onnx", str(tmp_path / "g.onnx"), None)):
        gen = load_generator(model, tmp_path, "latest", CPU, {}, dropout=dropout)
        assert translate_folder(gen, tmp_path / "in", tmp_path / name) == 2
    for i in range(2):
        a, b = (np.array(Image.open(tmp_path / d / f"im{i}.png")).astype(int) for d in ("torch", "onnx"))
        assert a.shape == b.shape and a.std() > 5
        assert np.abs(a - b).max() <= 1 and (a == b).mean() > 0.999  # float rounding at .5 only


def test_translate_with_an_onnx_model_runs_without_torch(tmp_path):
    source = checkpoint(tmp_path, "unet_128")
    export(str(source), tmp_path / "g.onnx", "onnx", (128, 128))
    (tmp_path / "in").mkdir()
    Image.fromarray(blobs(200, 3)[:120]).save(tmp_path / "in" / "odd.png")
    gen = load_generator(str(source), tmp_path, "latest", CPU, {}, dropout=False)
    translate_folder(gen, tmp_path / "in", tmp_path / "torch")
    script = (  # torch made unimportable: the command must not need it for an .onnx model
        "import sys; sys.modules['torch'] = None; from pairforge.cli import main; "
        f"main(['translate', {str(tmp_path / 'g.onnx')!r}, {str(tmp_path / 'in')!r}, {str(tmp_path / 'out')!r}, '-q'])"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    a, b = (np.array(Image.open(tmp_path / d / "odd.png")).astype(int) for d in ("torch", "out"))
    assert a.shape == b.shape == (120, 200, 3) and np.abs(a - b).max() <= 1 and (a == b).mean() > 0.999


def test_export_and_runs_commands(tmp_path, ab_dataset, tiny, capsys):
    from pairforge.train.loop import train

    cfg = tiny(ab_dataset(train=2, size=32), netG="resnet_6blocks", load_size=32, crop_size=32, max_steps=2)
    train(cfg, quiet=True)
    with pytest.raises(SystemExit) as exit_:
        main(["export", "tiny", str(tmp_path / "m.onnx"), "--runs_dir", str(cfg.runs_dir), "--size", "32", "--json"])
    assert exit_.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "onnx" and summary["max_diff"] < 1e-4 and summary["checked_sizes"] == "32x32, 36x40"
    with pytest.raises(SystemExit) as exit_:
        main(["export", "tiny", str(tmp_path / "m.onnx"), "--runs_dir", str(cfg.runs_dir), "--size", "30"])
    assert exit_.value.code == 2 and "needs sides divisible by 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["runs", str(cfg.runs_dir), "--json"])
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed | {"updated": ""} == {
        "run": "tiny",
        "dataset": "data",
        "model": "pix2pix resnet_6blocks",
        "steps": 2,
        "epoch": "2/4",
        "status": "stopped",
        "best": {},
        "updated": "",
    }


def test_runs_lists_status_and_best_metrics(tmp_path):
    from pairforge.train.runs import best_text, list_runs

    def make(name: str, log: list[dict], results: dict[str, dict]) -> None:
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"dataroot": "/d/facades", "netG": "unet_256", "n_epochs": 1}))
        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log) + '{"step": 9, "cut')
        for folder, metrics in results.items():
            (run / "results" / folder).mkdir(parents=True)
            (run / "results" / folder / "metrics.json").write_text(json.dumps(metrics))

    start = {"event": "start", "step": 0}
    make(
        "a",
        [start, {"step": 5, "epoch": 1}, {"event": "stop", "epochs": 1.0}],
        {
            "test_latest": {"l1": 0.1, "psnr": 20.0, "ssim": 0.5},
            "test_1": {"l1": 0.2, "psnr": 22.5, "ssim": None},
        },
    )
    make("b", [start, {"step": 3, "epoch": 1}, {"event": "nonfinite", "step": 3}], {})
    make("c", [start, {"step": 2, "epoch": 1}], {})
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text("{")
    a, b, c, d = list_runs(tmp_path)
    assert d["status"].startswith("unreadable config.json")
    assert [r["status"] for r in (a, b, c)] == ["done", "failed: non-finite loss", "running or interrupted"]
    assert (a["dataset"], a["model"], a["steps"], a["epoch"]) == ("facades", "pix2pix unet_256", 5, "1/1")
    assert a["best"] == {
        "l1": {"value": 0.1, "results": "test_latest"},
        "psnr": {"value": 22.5, "results": "test_1"},
        "ssim": {"value": 0.5, "results": "test_latest"},
    }
    assert best_text(a["best"]) == "PSNR 22.50 dB, SSIM 0.500, L1 0.1000 (test_1, test_latest)"
    assert best_text(b["best"]) == "-"
