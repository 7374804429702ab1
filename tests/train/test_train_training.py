"""The training loop: learning, exact resume, NaN stop, run folder contents, every model variant."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from pairforge.errors import PairforgeError
from pairforge.train.codings import Codings
from pairforge.train.config import TrainConfig
from pairforge.train.fast import Speed, _restore, _snapshot
from pairforge.train.loop import train
from pairforge.train.models import Pix2PixModel

CPU = torch.device("cpu")


def log_records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_reconstruction_loss_decreases_on_an_easy_task(ab_dataset, tiny):
    cfg = tiny(ab_dataset(train=4), lr=1e-3, n_epochs=20, max_steps=40, print_freq=10, display_freq=20)
    summary = train(cfg, quiet=True)
    records = [r for r in log_records(cfg.runs_dir / "tiny") if "G_L1" in r]
    assert len(records) == 4 and summary["steps"] == 40
    assert records[-1]["G_L1"] < 0.6 * records[0]["G_L1"]
    assert all(r["img_per_s"] > 0 and {"G_GAN", "D_real", "D_fake", "lr"} <= r.keys() for r in records)
    run = cfg.runs_dir / "tiny"
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000020.png", "step_0000040.png"]
    assert TrainConfig.model_validate_json((run / "config.json").read_text()) == cfg.model_copy(
        update={"codings": Codings()}
    )
    saved = json.loads((run / "config.json").read_text())
    assert (saved["world_size"], saved["global_batch_size"]) == (1, cfg.batch_size)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(ab_dataset, tiny):
    root = ab_dataset(train=5)
    whole = tiny(root, name="whole", n_epochs=1, n_epochs_decay=2, save_epoch_freq=1)  # 3 steps per epoch, 9 in all
    train(whole, quiet=True)
    split = whole.model_copy(update={"name": "split", "max_steps": 4})
    assert train(split, quiet=True)["steps"] == 4
    assert train(split.model_copy(update={"max_steps": None}), resume=True, quiet=True)["steps"] == 9
    expected = load_file(whole.runs_dir / "whole" / "checkpoints" / "latest.safetensors")
    resumed = load_file(whole.runs_dir / "split" / "checkpoints" / "latest.safetensors")
    assert expected.keys() == resumed.keys() and any(k.startswith("opt.D.") for k in expected)
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    checkpoints = sorted(p.name for p in (whole.runs_dir / "split" / "checkpoints").iterdir())
    assert checkpoints == [f"epoch_00{e}.safetensors" for e in (1, 2, 3)] + ["latest.safetensors"]
    lrs = [r["lr"] for r in log_records(whole.runs_dir / "whole") if "lr" in r]
    assert lrs[0] == pytest.approx(2e-4) and lrs[-1] == pytest.approx(2e-4 / 3)  # linear decay, as the reference


def test_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(ab_dataset, tiny, monkeypatch):
    real_step = Pix2PixModel.train_step
    calls = []

    def failing_step(self, inputs, targets):
        losses, outputs = real_step(self, inputs, targets)
        calls.append(1)
        return (losses * float("nan") if len(calls) == 5 else losses), outputs

    monkeypatch.setattr(Pix2PixModel, "train_step", failing_step)
    cfg = tiny(ab_dataset(train=4), print_freq=1, save_latest_freq=2)
    with pytest.raises(PairforgeError, match=r"loss G_GAN is nan by step 5: training stopped; last good checkpoint"):
        train(cfg, quiet=True)
    latest = cfg.runs_dir / "tiny" / "checkpoints" / "latest.safetensors"
    from pairforge.train.checkpoints import read_metadata

    assert read_metadata(latest)["step"] == "4"
    assert log_records(cfg.runs_dir / "tiny")[-1]["event"] == "nonfinite"


def test_existing_run_needs_continue_or_overwrite(ab_dataset, tiny):
    cfg = tiny(ab_dataset(train=2), max_steps=1)
    train(cfg, quiet=True)
    with pytest.raises(PairforgeError, match="already has checkpoints: use --continue, --overwrite"):
        train(cfg, quiet=True)
    assert train(cfg, overwrite=True, quiet=True)["steps"] == 1


VARIANTS = [
    {},
    {"no_gan": True},
    {"no_condition_D": True, "recon_loss": "l2"},
    {"noise_nc": 2, "norm": "instance", "no_dropout": True},
    {"optimizer": "sgd", "lr": 0.01},
    {"gan_mode": "lsgan", "netD": "pixel"},
    {"gan_mode": "hinge", "netD": "multiscale", "num_D": 2},
    {"gan_mode": "wgangp", "netD": "n_layers", "n_layers_D": 2},
    {"netG": "resnet_6blocks", "norm": "none"},
]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_every_variant_trains(tmp_path, options):
    cfg = TrainConfig(**({"netG": "unet_128", "ngf": 4, "ndf": 4, "batch_size": 2} | options))
    model = Pix2PixModel(cfg, CPU)
    before = [p.detach().clone() for p in model.net_G.parameters()]
    inputs, targets = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 3, 128, 128) * 2 - 1
    for _ in range(2):
        losses, outputs = model.train_step(inputs, targets)
    assert losses.shape == (len(model.loss_names),) and torch.isfinite(losses).all()
    assert outputs.shape == (2, 3, 128, 128) and not outputs.requires_grad
    assert any(not torch.equal(b, p) for b, p in zip(before, model.net_G.parameters(), strict=True))
    assert ("D" in model.networks) == (not cfg.no_gan)


def test_warm_up_before_graph_capture_leaves_training_unchanged():
    """What the CUDA-graph path does on the GPU (warm-up steps, then restore), checked with eager steps."""
    cfg = TrainConfig(netG="unet_128", ngf=4, ndf=4, device="cpu")
    inputs, targets = torch.rand(1, 3, 128, 128) * 2 - 1, torch.rand(1, 3, 128, 128) * 2 - 1
    fresh, warmed = Pix2PixModel(cfg, CPU, Speed()), Pix2PixModel(cfg, CPU, Speed())
    saved = _snapshot(warmed)
    for _ in range(3):
        warmed.train_step(inputs, targets)
    _restore(warmed, saved)
    for model in (fresh, warmed):
        torch.manual_seed(1)
        for _ in range(2):
            model.train_step(inputs, targets)
    for name in ("G", "D"):
        expected, got = fresh.networks[name].state_dict(), warmed.networks[name].state_dict()
        assert all(torch.equal(expected[k], got[k]) for k in expected)
