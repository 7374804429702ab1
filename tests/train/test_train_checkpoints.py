"""Checkpoints: round trip, atomic writes, and importing state_dicts saved by the reference trainer."""

from __future__ import annotations

import pytest
import torch

from pairforge.errors import PairforgeError
from pairforge.train import checkpoints
from pairforge.train.config import TrainConfig
from pairforge.train.evaluate import load_generator
from pairforge.train.models import Pix2PixModel
from pairforge.train.networks import build_discriminator

CPU = torch.device("cpu")
CFG = TrainConfig(netG="unet_128", ngf=4, ndf=4)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 128, 128, generator=gen) * 2 - 1, torch.rand(1, 3, 128, 128, generator=gen) * 2 - 1


def test_round_trip_restores_weights_optimizer_and_rng_so_training_continues_identically(tmp_path):
    path = tmp_path / "ckpt" / "latest.safetensors"
    original = Pix2PixModel(CFG, CPU)
    original.train_step(*batch())
    checkpoints.save(path, original, step=7)
    assert [p.name for p in path.parent.iterdir()] == ["latest.safetensors"]  # no temporary file left behind
    copy = Pix2PixModel(CFG.model_copy(update={"seed": 5}), CPU)
    assert checkpoints.load(path, copy) == 7
    assert checkpoints.read_config(path) == CFG
    rng = torch.get_rng_state()  # the checkpoint's: dropout masks of the next step are the same for both
    for model in (original, copy):
        torch.set_rng_state(rng)
        model.train_step(*batch())
    for name in ("G", "D"):
        expected, got = original.networks[name].state_dict(), copy.networks[name].state_dict()
        assert all(torch.equal(expected[k], got[k]) for k in expected)
    state = copy.optimizers["G"].state_dict()["state"][0]
    assert state["step"].item() == 2 and state["exp_avg"].abs().sum() > 0


def test_link_makes_an_atomic_copy(tmp_path):
    source, target = tmp_path / "epoch_001.safetensors", tmp_path / "latest.safetensors"
    checkpoints.save(source, Pix2PixModel(CFG, CPU), step=1)
    target.write_text("old")
    checkpoints.link(source, target)
    assert target.read_bytes() == source.read_bytes() and len(list(tmp_path.iterdir())) == 2


def reference_unet_state(num_downs: int, ngf: int, input_nc: int = 3, output_nc: int = 3) -> dict:
    """A state_dict laid out as the reference's UnetGenerator with BatchNorm saves it, written from its
    structure (outermost: downconv, submodule, relu, upconv, tanh; middle: lrelu, downconv, norm, submodule,
    relu, upconv, norm; innermost: lrelu, downconv, relu, upconv, norm), independently of pairforge's code."""
    gen = torch.Generator().manual_seed(1)
    state: dict[str, torch.Tensor] = {}

    def put(key: str, *shape: int) -> None:
        state[key] = torch.randn(*shape, generator=gen)

    def norm(prefix: str, channels: int) -> None:
        for field in ("weight", "bias", "running_mean"):
            put(f"{prefix}.{field}", channels)
        state[f"{prefix}.running_var"] = torch.rand(channels, generator=gen) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(100)

    levels = [(ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)] + [(8 * ngf, 8 * ngf)] * (num_downs - 5)
    put("model.model.0.weight", ngf, input_nc, 4, 4)
    put("model.model.3.weight", 2 * ngf, output_nc, 4, 4)
    put("model.model.3.bias", output_nc)
    prefix = "model.model.1.model"
    for outer, inner in levels:
        put(f"{prefix}.1.weight", inner, outer, 4, 4)
        norm(f"{prefix}.2", inner)
        put(f"{prefix}.5.weight", 2 * inner, outer, 4, 4)
        norm(f"{prefix}.6", outer)
        prefix += ".3.model"
    put(f"{prefix}.1.weight", 8 * ngf, 8 * ngf, 4, 4)
    put(f"{prefix}.3.weight", 8 * ngf, 8 * ngf, 4, 4)
    norm(f"{prefix}.4", 8 * ngf)
    return state


def test_reference_unet_checkpoint_loads_with_weights_only(tmp_path):
    state = reference_unet_state(num_downs=7, ngf=8)
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    gen = load_generator(str(path), tmp_path, "latest", CPU, {"netG": "unet_128", "ngf": 8})
    loaded = gen.net.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert gen.run is None and gen.net.training  # reference default: BatchNorm in train mode at test time


def test_reference_patchgan_keys_and_dataparallel_prefix(tmp_path):
    shapes = {"model.0.weight": (8, 6, 4, 4), "model.0.bias": (8,), "model.2.weight": (16, 8, 4, 4)}
    shapes |= {"model.5.weight": (32, 16, 4, 4), "model.8.weight": (64, 32, 4, 4)}
    shapes |= {"model.11.weight": (1, 64, 4, 4), "model.11.bias": (1,)}
    for index, channels in ((3, 16), (6, 32), (9, 64)):
        shapes |= {f"model.{index}.{f}": (channels,) for f in ("weight", "bias", "running_mean", "running_var")}
    state = {f"module.{k}": torch.randn(*s) for k, s in shapes.items()}  # as saved from nn.DataParallel
    net = build_discriminator("basic", 6, 8, 3, "batch", 1)
    checkpoints.load_weights(net, state, "latest_net_D.pth")
    assert torch.equal(net.state_dict()["model.8.weight"], state["module.model.8.weight"])


def test_old_instance_norm_statistics_are_ignored_and_mismatches_are_one_line_errors(tmp_path):
    cfg = {"netG": "resnet_6blocks", "ngf": 4, "norm": "instance", "no_dropout": True}
    net = load_generator(str(_saved_generator(tmp_path, cfg)), tmp_path, "latest", CPU, cfg).net
    state = dict(net.state_dict()) | {"model.2.running_mean": torch.zeros(4), "model.2.running_var": torch.ones(4)}
    torch.save(state, tmp_path / "old.pth")
    load_generator(str(tmp_path / "old.pth"), tmp_path, "latest", CPU, cfg)
    with pytest.raises(
        PairforgeError, match=r"old.pth: weights do not fit this network \(wrong shape for .*--ngf"
    ) as err:
        load_generator(str(tmp_path / "old.pth"), tmp_path, "latest", CPU, cfg | {"ngf": 8})
    assert "\n" not in str(err.value)
    with pytest.raises(PairforgeError, match=r"missing .* keys, e\.g\. model\.1\.bias"):
        load_generator(str(tmp_path / "old.pth"), tmp_path, "latest", CPU, cfg | {"norm": "batch"})


class Payload:
    """Not a tensor: torch.load(weights_only=True) must refuse to unpickle it."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"x": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(PairforgeError, match=r"evil\.pth: cannot read as safetensors or a PyTorch state_dict"):
        load_generator(str(tmp_path / "evil.pth"), tmp_path, "latest", CPU, {})


def _saved_generator(tmp_path, options: dict):
    model = Pix2PixModel(TrainConfig(**options), CPU)
    path = tmp_path / "g.pth"
    torch.save(model.net_G.state_dict(), path)
    return path


def test_resume_in_fast_mode_layouts(ab_dataset, tiny, tmp_path):
    """Fast mode keeps weights channels_last and Adam fused; a checkpoint stores contiguous moments, which fused
    Adam refuses beside channels_last weights ("must have same dtype, device, and layout") unless restored in
    the parameters' layout. Fused Adam runs on the CPU too, so this is checked here."""
    from pairforge.train import checkpoints
    from pairforge.train.fast import Speed
    from pairforge.train.models import Pix2PixModel

    cfg = tiny(ab_dataset(train=2, test=1))
    speed = Speed(channels_last=True, fused=True)
    batch = torch.rand(1, 3, 128, 128) * 2 - 1, torch.rand(1, 3, 128, 128) * 2 - 1
    model = Pix2PixModel(cfg, torch.device("cpu"), speed)
    model.train_step(*batch)
    checkpoints.save(tmp_path / "c.safetensors", model, 1)
    resumed = Pix2PixModel(cfg, torch.device("cpu"), speed)
    checkpoints.load(tmp_path / "c.safetensors", resumed)
    for param, state in resumed.optimizers["G"].state.items():
        assert state["exp_avg"].stride() == param.stride()
    rng = torch.get_rng_state()  # as saved: the next step's dropout draws
    resumed.train_step(*batch)  # fused Adam accepts the restored moments
    torch.set_rng_state(rng)
    model.train_step(*batch)
    for name, net in model.networks.items():
        expected = net.state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in resumed.networks[name].state_dict().items()), name
