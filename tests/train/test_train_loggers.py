"""--logger tensorboard / wandb: what lands in their files, and failures that warn instead of killing a run."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from pairforge.errors import UsageError
from pairforge.train.loggers import FACTORIES, Loggers
from pairforge.train.loop import train


def test_tensorboard_events_hold_the_logged_scalars_and_sample_grids(ab_dataset, tiny):
    cfg = tiny(
        ab_dataset(train=4, size=64),
        load_size=64,
        crop_size=64,
        netG="resnet_6blocks",
        max_steps=4,
        display_freq=2,
        logger="tensorboard",
    )
    train(cfg, quiet=True)
    run = cfg.runs_dir / "tiny"
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    logged = [r for r in logged if "G_L1" in r]
    assert {"lr", "img_per_s", "loss/G_L1", "loss/G_GAN", "loss/D_real", "loss/D_fake"} <= set(events.Tags()["scalars"])
    l1 = events.Scalars("loss/G_L1")
    assert [e.step for e in l1] == [r["step"] for r in logged] == [2, 4]
    assert [e.value for e in l1] == pytest.approx([r["G_L1"] for r in logged], rel=1e-6)
    images = events.Images("samples")
    assert [e.step for e in images] == [2, 4]
    decoded = np.array(Image.open(io.BytesIO(images[-1].encoded_image_string)))
    assert np.array_equal(decoded, np.array(Image.open(run / "samples" / "step_0000004.png")))
    assert (images[-1].width, images[-1].height) == (3 * 64, 2 * 64)  # input | output | target, batch of 2
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["netG"].string_value == "resnet_6blocks" and hparams["lambda_L1"].number_value == 100


def test_logger_names_are_checked(tiny, tmp_path):
    with pytest.raises(ValueError, match="choose from tensorboard, wandb"):
        tiny(tmp_path, logger="tensorboard,mlflow")
    assert tiny(tmp_path, logger=" wandb , tensorboard,wandb").logger == "wandb,tensorboard"


def test_a_failing_logger_warns_once_and_the_others_go_on(tiny, tmp_path, capsys):
    loggers = Loggers(["tensorboard"], tiny(tmp_path), tmp_path / "run")
    seen = []

    class Broken:
        def scalars(self, step, values):
            raise OSError("disk full")

    class Recorder:
        def scalars(self, step, values):
            seen.append((step, values))

    loggers.active = {"wandb": Broken(), "tensorboard": Recorder()}
    loggers.scalars(1, {"lr": 0.1})
    loggers.scalars(2, {"lr": 0.2})
    assert seen == [(1, {"lr": 0.1}), (2, {"lr": 0.2})] and list(loggers.active) == ["tensorboard"]
    assert capsys.readouterr().err.count("warning: --logger wandb failed (OSError: disk full)") == 1


def test_wandb_missing_is_a_clear_message(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(UsageError, match=r"--logger wandb: wandb is not installed \(pip install"):
        Loggers(["wandb"], tiny(tmp_path), tmp_path / "run")


def test_wandb_offline_run_folder(ab_dataset, tiny, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny(
        ab_dataset(train=2, size=64),
        load_size=64,
        crop_size=64,
        netG="resnet_6blocks",
        max_steps=2,
        display_freq=2,
        logger="wandb",
    )
    train(cfg, quiet=True)
    runs = list((cfg.runs_dir / "tiny" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("run-*.wandb"))


def test_a_logger_that_cannot_start_warns_and_training_goes_on(tiny, tmp_path, monkeypatch, capsys):
    def refuse(cfg, run_root):
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setitem(FACTORIES, "wandb", refuse)
    loggers = Loggers(["wandb", "tensorboard"], tiny(tmp_path), tmp_path / "run")
    assert list(loggers.active) == ["tensorboard"]
    assert "warning: --logger wandb failed (ConnectionError: api.wandb.ai unreachable); it is off" in (
        capsys.readouterr().err
    )
