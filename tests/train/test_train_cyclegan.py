"""CycleGAN (`--model cycle_gan`): defaults, networks, image pool, unaligned data, training, resume, test output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pairforge.train.config import TrainConfig
from pairforge.train.data import UnalignedBatches, UnalignedCache, find_unaligned
from pairforge.train.evaluate import load_generator, run_test
from pairforge.train.loop import train
from pairforge.train.models import CycleGANModel, ImagePool, build_model
from pairforge.train.translate import translate_folder
from tests.train.conftest import blobs

CPU = torch.device("cpu")
SIZE = 32


def write_unaligned(root: Path, counts: dict[str, int], size: int = SIZE) -> Path:
    """`<root>/{trainA,trainB,testA,testB}` with `counts[folder]` generated images each (B: inverted colours)."""
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = blobs(size, hash(folder) % 1000 * 100 + i)
            Image.fromarray(255 - image if folder.endswith("B") else image).save(root / folder / f"{folder}{i}.png")
    return root


@pytest.fixture
def unaligned(tmp_path) -> Path:
    return write_unaligned(tmp_path / "data", {"trainA": 5, "trainB": 3, "testA": 2, "testB": 3})


def cycle_cfg(dataroot: Path | None = None, runs_dir: Path | None = None, **options) -> TrainConfig:
    values = {
        "model": "cycle_gan",
        "dataroot": dataroot,
        "runs_dir": runs_dir or Path("runs"),
        "name": "cyc",
        "netG": "resnet_6blocks",
        "ngf": 4,
        "ndf": 4,
        "load_size": SIZE + 4,
        "crop_size": SIZE,
        "n_epochs": 1,
        "n_epochs_decay": 2,
        "print_freq": 2,
        "pool_size": 4,
        "device": "cpu",
    }
    return TrainConfig(**(values | options))


def test_cycle_gan_defaults_unless_given():
    cfg = TrainConfig(model="cycle_gan")
    assert (cfg.netG, cfg.norm, cfg.no_dropout, cfg.gan_mode) == ("resnet_9blocks", "instance", True, "lsgan")
    assert (cfg.lambda_A, cfg.lambda_B, cfg.lambda_identity, cfg.pool_size, cfg.lr) == (10, 10, 0.5, 50, 2e-4)
    given = TrainConfig(model="cycle_gan", netG="resnet_6blocks", norm="batch", no_dropout=False)
    assert (given.netG, given.norm, given.no_dropout, given.gan_mode) == ("resnet_6blocks", "batch", False, "lsgan")
    assert TrainConfig().netG == "unet_256" and TrainConfig().norm == "batch"  # pix2pix untouched
    assert TrainConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(ValueError, match="--lambda_identity needs --input_nc equal"):
        TrainConfig(model="cycle_gan", input_nc=1)
    assert TrainConfig(model="cycle_gan", input_nc=1, lambda_identity=0).input_nc == 1


def test_networks_match_the_reference_sizes():
    model = CycleGANModel(TrainConfig(model="cycle_gan"), CPU)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in model.networks.items()}
    assert counts == {"G_A": 11_378_179, "G_B": 11_378_179, "D_A": 2_764_737, "D_B": 2_764_737}  # 11.378 M, 2.765 M
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.net_G_A.modules())
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in model.net_D_A.modules())
    small = CycleGANModel(cycle_cfg(input_nc=1, output_nc=3, lambda_identity=0), CPU)
    a, b = torch.zeros(1, 1, SIZE, SIZE), torch.zeros(1, 3, SIZE, SIZE)
    assert small.net_G_A(a).shape == (1, 3, SIZE, SIZE) and small.net_G_B(b).shape == (1, 1, SIZE, SIZE)
    assert small.net_D_A(b).shape == (1, 1, 2, 2) and small.net_D_B(a).shape == (1, 1, 2, 2)
    assert set(small.optimizers) == {"G", "D"}
    params_g = sum(p.numel() for group in small.optimizers["G"].param_groups for p in group["params"])
    assert params_g == sum(p.numel() for n in ("G_A", "G_B") for p in small.networks[n].parameters())


def test_pool_size_zero_passes_fakes_through():
    pool = ImagePool(0, CPU)
    fakes = torch.randn(3, 3, 4, 4)
    assert pool.query(fakes) is fakes


def test_pool_fills_then_returns_stored_fakes_half_the_time():
    torch.manual_seed(0)
    pool = ImagePool(5, CPU)
    first = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 2, 2)
    assert torch.equal(pool.query(first), first)  # filling: every fake is stored and returned
    assert int(pool.count) == 5 and torch.equal(pool.images, first)
    stored_returned, trials = 0, 2000
    for i in range(trials):
        fake = torch.full((1, 3, 2, 2), 100.0 + i)
        out = pool.query(fake)
        if not torch.equal(out, fake):
            stored_returned += 1
            assert out[0, 0, 0, 0].item() < 100.0 + i  # an older fake, now replaced by the new one
            assert (pool.images == 100.0 + i).flatten(1).all(1).sum() == 1
    assert abs(stored_returned / trials - 0.5) < 0.05
    assert int(pool.count) == 5


def test_identity_loss_is_not_computed_when_lambda_identity_is_zero(monkeypatch):
    real_A, real_B = torch.rand(1, 3, SIZE, SIZE) * 2 - 1, torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    calls = {}
    for weight, generator_calls in ((0.5, 3), (0.0, 2)):  # G_A: fake_B, rec_B (+ idt_A)
        model = CycleGANModel(cycle_cfg(lambda_identity=weight), CPU)
        calls[weight] = []
        model.net_G_A.register_forward_hook(lambda *args, w=weight: calls[w].append(1))
        losses, fake_B = model.train_step(real_A, real_B)
        assert len(calls[weight]) == generator_calls
        assert losses.shape == (len(model.loss_names),) and torch.isfinite(losses).all()
        assert fake_B.shape == real_B.shape and not fake_B.requires_grad
    assert CycleGANModel(cycle_cfg(lambda_identity=0), CPU).loss_names == (
        "D_A",
        "G_A",
        "cycle_A",
        "D_B",
        "G_B",
        "cycle_B",
    )


def test_unaligned_plan_pairs_domains_of_different_sizes(unaligned):
    cfg = cycle_cfg(unaligned, batch_size=2)
    files = find_unaligned(unaligned, "train", cfg.direction)
    assert (len(files.a), len(files.b)) == (5, 3)
    assert find_unaligned(unaligned, "train", "BtoA").a == files.b  # BtoA swaps the folders, as the reference
    batches = UnalignedBatches(UnalignedCache.load(files, cfg), cfg, CPU)
    assert batches.steps_per_epoch == 3  # ceil(max(5, 3) / 2)
    plan_a, plan_b = batches.plan(0)
    assert sorted(plan_a.index[:5].tolist()) == [0, 1, 2, 3, 4] and plan_b.index.max() < 3
    again_a, again_b = batches.plan(0)
    assert torch.equal(plan_a.index, again_a.index) and torch.equal(plan_b.index, again_b.index)
    assert not torch.equal(torch.cat([plan_a.index, plan_b.index]), torch.cat([p.index for p in batches.plan(1)]))
    real_A, real_B = batches.batch((plan_a, plan_b), 1)
    assert real_A.shape == real_B.shape == (2, 3, SIZE, SIZE) and real_A.min() >= -1 and real_A.max() <= 1
    serial = UnalignedBatches(batches.cache, cfg.model_copy(update={"serial_batches": True}), CPU)
    serial_a, serial_b = serial.plan(7)
    assert serial_a.index.tolist() == [0, 1, 2, 3, 4, 0] and serial_b.index.tolist() == [0, 1, 2, 0, 1, 0]


def test_training_resume_and_test_output(unaligned, tmp_path):
    runs = tmp_path / "runs"
    whole = cycle_cfg(unaligned, runs, name="whole", save_epoch_freq=1, display_freq=5)  # 5 steps/epoch, 15 in all
    summary = train(whole, quiet=True)
    assert summary["steps"] == 15
    records = [json.loads(line) for line in (runs / "whole" / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "cycle_A" in r]
    assert losses and set(CycleGANModel(whole, CPU).loss_names) <= losses[-1].keys()
    assert losses[0]["lr"] == pytest.approx(2e-4) and losses[-1]["lr"] == pytest.approx(2e-4 / 3)

    split = whole.model_copy(update={"name": "split", "max_steps": 7})
    assert train(split, quiet=True)["steps"] == 7
    assert train(split.model_copy(update={"max_steps": None}), resume=True, quiet=True)["steps"] == 15
    expected = load_file(runs / "whole" / "checkpoints" / "latest.safetensors")
    resumed = load_file(runs / "split" / "checkpoints" / "latest.safetensors")
    assert {"state.pool.A.images", "state.pool.B.count", "net.G_A.model.1.weight"} <= expected.keys()
    assert expected.keys() == resumed.keys()
    assert [k for k in expected if not torch.equal(expected[k], resumed[k])] == []

    gen = load_generator(str(runs / "whole"), runs, "latest", CPU, {})
    results = tmp_path / "results"
    metrics = run_test(gen, unaligned, "test", results)
    assert (metrics["count_A"], metrics["count_B"]) == (2, 3)
    names = {p.name for p in (results / "images").iterdir()}
    for suffix in ("real_A", "fake_B", "rec_A"):
        assert {f"testA{i}_{suffix}.png" for i in range(2)} <= names
    for suffix in ("real_B", "fake_A", "rec_B"):
        assert {f"testB{i}_{suffix}.png" for i in range(3)} <= names
    assert len(names) == 15
    page = (results / "index.html").read_text()
    assert 'src="images/testB2_rec_B.png"' in page and page.count("<tr>") == 2 + 2 + 3

    # translate: --direction picks G_A or G_B; they differ
    out_ab, out_ba = tmp_path / "ab", tmp_path / "ba"
    translate_folder(gen, unaligned / "testA", out_ab)
    backward = load_generator(str(runs / "whole"), runs, "latest", CPU, {"direction": "BtoA"})
    translate_folder(backward, unaligned / "testA", out_ba)
    first_ab, first_ba = (np.array(Image.open(d / "testA0.png")) for d in (out_ab, out_ba))
    assert first_ab.shape == (SIZE, SIZE, 3) and not np.array_equal(first_ab, first_ba)
    model = build_model(whole, CPU)
    assert isinstance(model, CycleGANModel)


def test_reference_generators_are_imported(tmp_path, unaligned):
    cfg = cycle_cfg(lambda_identity=0)
    model = CycleGANModel(cfg, CPU)
    ref = tmp_path / "ref"
    ref.mkdir()
    torch.save({f"module.{k}": v for k, v in model.net_G_A.state_dict().items()}, ref / "latest_net_G_A.pth")
    torch.save(model.net_G_B.state_dict(), ref / "latest_net_G_B.pth")
    options = {"model": "cycle_gan", "netG": "resnet_6blocks", "ngf": 4, "crop_size": SIZE, "load_size": SIZE + 4}
    gen = load_generator(str(ref / "latest_net_G_A.pth"), tmp_path, "latest", CPU, options)
    for loaded, original in ((gen.net, model.net_G_A), (gen.back, model.net_G_B)):
        expected = original.state_dict()
        assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())
    metrics = run_test(gen, unaligned, "test", tmp_path / "results")
    assert metrics["count"] == 5


def test_warm_up_restore_also_resets_the_pools():
    """What fast mode does before compiling/capturing (warm-up steps, then restore), checked with eager steps."""
    from pairforge.train.fast import _restore, _snapshot

    cfg = cycle_cfg()
    real_A, real_B = torch.rand(1, 3, SIZE, SIZE) * 2 - 1, torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    fresh, warmed = CycleGANModel(cfg, CPU), CycleGANModel(cfg, CPU)
    saved = _snapshot(warmed)
    for _ in range(3):
        warmed.train_step(real_A, real_B)
    _restore(warmed, saved)
    assert int(warmed.pool_A.count) == 0
    for model in (fresh, warmed):
        torch.manual_seed(1)
        for _ in range(6):
            model.train_step(real_A, real_B)
    for name in fresh.networks:
        expected, got = fresh.networks[name].state_dict(), warmed.networks[name].state_dict()
        assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_command_line_train_continue_test_translate(tmp_path, cli, unaligned):
    runs = tmp_path / "runs"
    tiny = ["--ngf", "4", "--ndf", "4", "--load_size", str(SIZE), "--crop_size", str(SIZE), "--device", "cpu"]
    base = ["train", "--model", "cycle_gan", "--dataroot", unaligned, "--runs_dir", runs, *tiny]
    first = cli(*base, "--netG", "resnet_6blocks", "--max_steps", "2", "--json")
    assert first.code == 0, first.err
    assert first.json()["run"].endswith("data_cycle_gan")
    config = json.loads((runs / "data_cycle_gan" / "config.json").read_text())
    assert (config["netG"], config["norm"], config["no_dropout"], config["gan_mode"]) == (
        "resnet_6blocks",  # given
        "instance",  # cycle_gan defaults where not given
        True,
        "lsgan",
    )
    resumed = cli(*base, "--continue", "--max_steps", "3", "--json")
    assert resumed.code == 0, resumed.err
    assert resumed.json()["steps"] == 3
    tested = cli("test", "data_cycle_gan", "--runs_dir", runs, "--json")
    assert tested.code == 0, tested.err
    assert tested.json()["count_A"] == 2 and tested.json()["count_B"] == 3
    translated = cli("translate", runs / "data_cycle_gan", unaligned / "testB", tmp_path / "out", "--direction", "BtoA")
    assert translated.code == 0, translated.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["testB0.png", "testB1.png", "testB2.png"]


def test_pool_keeps_its_contents_across_autocast_dtypes():
    pool = ImagePool(2, CPU)
    pool.query(torch.ones(2, 3, 4, 4))
    out = pool.query(torch.zeros(4, 3, 4, 4, dtype=torch.bfloat16))
    assert out.dtype == pool.images.dtype == torch.float32 and int(pool.count) == 2
    assert out.sum() + pool.images.sum() == 2 * 3 * 4 * 4  # each stored fake is either still there or returned
    pool.query(torch.zeros(1, 3, 8, 8))  # a new crop size starts a new pool
    assert int(pool.count) == 1 and pool.images.shape == (2, 3, 8, 8)


def test_pool_batch_swaps_each_stored_fake_at_most_once():
    """A batch is queried at once: nothing is lost or duplicated, whatever the draws (and at batch 1, the
    reference's rule: see test_pool_fills_then_returns_stored_fakes_half_the_time)."""
    torch.manual_seed(0)
    pool = ImagePool(3, CPU)
    pool.query(torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2))
    swapped = 0
    for i in range(300):
        fakes = (10.0 + 8 * i + torch.arange(8.0)).view(8, 1, 1, 1).expand(8, 1, 2, 2)
        before = sorted(pool.images[:, 0, 0, 0].tolist())
        out = pool.query(fakes)
        values = out[:, 0, 0, 0].tolist()
        returned_stored = [v for v in values if v < fakes[0, 0, 0, 0]]
        assert len(set(returned_stored)) == len(returned_stored)  # a stored fake is returned once at most
        # every image is still somewhere: in the pool or handed back
        assert sorted(before + fakes[:, 0, 0, 0].tolist()) == sorted(values + pool.images[:, 0, 0, 0].tolist())
        swapped += len(returned_stored)
    assert 0 < swapped < 300 * 3
