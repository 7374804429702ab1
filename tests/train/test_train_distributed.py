"""DDP on CPU (gloo, 2 ranks through `pairforge train --gpus 2`): the same weights as one process with the
global batch, resume in another world size, rank 0 alone writes, a dying rank stops the run cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pairforge.train.checkpoints import read_metadata
from pairforge.train.config import TrainConfig
from pairforge.train.distributed import World, check_sync_bn, rescale_step
from pairforge.train.fast import Speed
from pairforge.train.loop import train
from pairforge.train.models import CycleGANModel, Pix2PixModel
from tests.train.test_train_cyclegan import cycle_cfg, write_unaligned

# Tiny nets without normalisation layers (no batch statistics; instance norm would do as well in exact arithmetic,
# but its 1/sqrt(var + eps) on the near-constant channels of tiny nets turns float noise into percent-level
# differences within a few steps), no dropout (no per-sample RNG), SGD (Adam's normalised step would blow float
# noise in near-zero gradients up to a full step).
TINY = {
    "netG": "unet_128", "ngf": 8, "ndf": 8, "load_size": 136, "crop_size": 128, "norm": "none",
    "no_dropout": True, "optimizer": "sgd", "lr": 0.002, "print_freq": 1, "device": "cpu",
}  # fmt: skip


def flags(values: dict) -> list[str]:
    out = []
    for key, value in values.items():
        out += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return out


def weights(run: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(run / "checkpoints" / "latest.safetensors").items() if k.startswith("net.")}


def assert_same_training(got: dict, want: dict, start: dict) -> None:
    """Equal up to float noise: every difference under 1e-3 of the largest change training made."""
    change = max((want[k] - start[k]).abs().max().item() for k in want)
    assert change > 1e-3  # training moved the weights
    assert max((got[k] - want[k]).abs().max().item() for k in want) < 1e-3 * change


def log_events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_two_ranks_train_as_one_process_with_the_global_batch_and_resume_in_one(ab_dataset, tmp_path, cli):
    data = ab_dataset(train=5, test=1, size=64)  # odd: rank 0 decodes 3 pairs, rank 1 2; an epoch is 3 steps
    runs = tmp_path / "runs"
    one = TrainConfig(dataroot=data, runs_dir=runs, name="one", batch_size=2, max_steps=2, **TINY)
    start = {f"net.{name}.{k}": v for name, net in Pix2PixModel(one, torch.device("cpu")).networks.items()
             for k, v in net.state_dict().items()}  # fmt: skip
    train(one, quiet=True)
    at_2 = weights(runs / "one")
    train(one.model_copy(update={"max_steps": 4}), resume=True, quiet=True)
    at_4 = weights(runs / "one")

    common = ["train", "--dataroot", data, "--runs_dir", runs, "--name", "ddp", *flags(TINY), "--display_freq", 1]
    result = cli(*common, "--gpus", 2, "--batch_size", 1, "--max_steps", 2)
    assert result.code == 0, result.err
    run = runs / "ddp"
    assert_same_training(weights(run), at_2, start)
    # rank 0 alone wrote: one start event, one record per step, the files of one writer and no leftovers
    events = log_events(run)
    assert [e.get("event") for e in events] == ["start", "first_step", None, None, "stop"]
    assert events[0]["world_size"] == 2 and [e["step"] for e in events[1:4]] == [1, 1, 2]
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == [
        "checkpoints", "checkpoints/latest.safetensors", "config.json", "log.jsonl",
        "samples", "samples/step_0000001.png", "samples/step_0000002.png",
    ]  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert (config["gpus"], config["batch_size"], config["world_size"], config["global_batch_size"]) == (2, 1, 2, 2)
    assert read_metadata(run / "checkpoints" / "latest.safetensors")["global_batch"] == "2"

    # the 2-rank checkpoint goes on in one process with the same global batch: as the 1-process run did
    result = cli("train", "--name", "ddp", "--runs_dir", runs, "--continue", "--gpus", 1, "--batch_size", 2,
                 "--max_steps", 4, "-q")  # fmt: skip
    assert result.code == 0, result.err
    assert_same_training(weights(run), at_4, start)
    resumed = [e for e in log_events(run) if e.get("event") == "resume"]
    assert [(e["step"], e["world_size"]) for e in resumed] == [(2, 1)]


def test_a_different_global_batch_resumes_in_the_same_epoch_at_the_same_share():
    # 6 pairs: 3 steps of 2 per epoch saved; 6 steps of 1 per epoch on resume
    assert rescale_step(4, {"global_batch": "2", "steps_per_epoch": "3"}, 1, 6) == 8  # epoch 1, 2 of 6 pairs seen
    assert rescale_step(8, {"global_batch": "1", "steps_per_epoch": "6"}, 2, 3) == 4
    assert rescale_step(7, {"global_batch": "1", "steps_per_epoch": "6"}, 4, 2) == 3  # 1 of 6 seen: round up
    assert rescale_step(5, {}, 2, 3) == 5  # checkpoints from before DDP: same batch


def test_a_dying_rank_ends_the_run_with_one_line_and_an_intact_checkpoint(ab_dataset, tmp_path):
    data = ab_dataset(train=4, test=1, size=64)
    marker = uuid.uuid4().hex
    command = [sys.executable, "-m", "pairforge.cli", "train", "--dataroot", str(data), "--runs_dir",
               str(tmp_path / "runs"), "--name", "k", *flags(TINY), "--gpus", "2", "--batch_size", "1",
               "--max_steps", "100000", "--save_latest_freq", "2", "-q"]  # fmt: skip
    proc = subprocess.Popen(command, env=os.environ | {"PAIRFORGE_TEST_RUN": marker}, stderr=subprocess.PIPE, text=True)
    latest = tmp_path / "runs" / "k" / "checkpoints" / "latest.safetensors"
    deadline = time.monotonic() + 120
    while not latest.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert latest.is_file()
    rank_1 = [pid for pid in _pids_with({"PAIRFORGE_TEST_RUN": marker, "RANK": "1"})]
    assert len(rank_1) == 1
    os.kill(rank_1[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: training stopped: rank 1 (killed by SIGKILL) of 2 failed")
    assert "resume with --continue" in last
    assert int(read_metadata(latest)["step"]) % 2 == 0 and load_file(latest)  # a whole checkpoint


def _pids_with(env: dict[str, str]) -> list[int]:
    """Processes of this user whose environment holds every `env` entry."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and all(environ.get(k) == v for k, v in env.items()):
            found.append(int(entry.name))
    return found


def test_sync_bn_and_the_cuda_graph_under_ddp_say_what_they_need():
    with pytest.raises(Exception, match="--sync_bn converts BatchNorm, but --norm is instance"):
        check_sync_bn(True, "instance", torch.device("cpu"))
    with pytest.raises(Exception, match="--sync_bn needs CUDA GPUs"):
        check_sync_bn(True, "batch", torch.device("cpu"))
    cuda = torch.device("cuda")
    cfg = TrainConfig(dataroot=Path("x"))
    alone, ddp = Speed.choose(cfg, cuda), Speed.choose(cfg, cuda, distributed=True)
    assert alone.cuda_graph and not alone.notes
    assert not ddp.cuda_graph and ddp.compile and ddp.amp
    assert ddp.notes == ("CUDA graph off under DDP (the gradient all-reduce is driven from the host each step)",)


@dataclass
class Shard:
    keys: list[str]
    images: torch.Tensor
    layout: str


def _gather_on_rank(rank: int, port: int, out: Path) -> None:
    os.environ |= {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    world = World.from_env()
    world.start(torch.device("cpu"))
    files = world.share(Shard([f"k{i}" for i in range(5)], torch.empty(0), "ab"))
    # each rank "decodes" its share: image i is i + 1 everywhere, rank 0's are 2x3, rank 1's 3x2
    images = torch.stack([torch.full((1, 2 + rank, 3 - rank), int(k[1:]) + 1.0) for k in files.keys])
    whole = world.gather(Shard(files.keys, images, files.layout))
    world.seed(0, 5)
    draws = [torch.zeros(1) for _ in range(2)]
    torch.distributed.all_gather(draws, torch.rand(1))
    if world.is_main:
        torch.save({"keys": whole.keys, "images": whole.images, "layout": whole.layout, "draws": draws}, out)
    world.stop()


def test_each_rank_decodes_its_share_gets_the_whole_cache_and_draws_its_own_random_numbers(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.multiprocessing.spawn(_gather_on_rank, args=(port, tmp_path / "whole.pt"), nprocs=2)
    whole = torch.load(tmp_path / "whole.pt", weights_only=True)
    assert whole["keys"] == ["k0", "k1", "k2", "k3", "k4"] and whole["layout"] == "ab"
    images = whole["images"]
    assert images.shape == (5, 1, 3, 3)  # padded to the largest height and width
    for i in range(5):
        h, w = (2, 3) if i % 2 == 0 else (3, 2)  # even items were rank 0's
        assert (images[i, 0, :h, :w] == i + 1).all() and images[i].sum() == (i + 1) * h * w
    assert whole["draws"][0] != whole["draws"][1]  # dropout, noise and pools differ between the ranks
    torch.manual_seed(3)
    alone = torch.rand(1)
    torch.manual_seed(3)
    World().seed(0, 5)  # one process: its RNG stays as the checkpoint or --seed left it
    assert torch.rand(1) == alone


def test_cycle_gan_two_ranks_train_as_one_process_and_keep_their_own_pools(tmp_path, cli):
    data = write_unaligned(tmp_path / "data", {"trainA": 5, "trainB": 3})
    runs = tmp_path / "runs"
    options = {"norm": "none", "optimizer": "sgd", "lr": 0.002, "print_freq": 1, "pool_size": 0}
    one = cycle_cfg(data, runs, name="one", batch_size=2, max_steps=3, **options)
    start = {f"net.{name}.{k}": v for name, net in CycleGANModel(one, torch.device("cpu")).networks.items()
             for k, v in net.state_dict().items()}  # fmt: skip
    train(one, quiet=True)
    flat = one.model_dump(mode="json", include={"netG", "ngf", "ndf", "load_size", "crop_size", "n_epochs",
                                                "n_epochs_decay", "device", *options})  # fmt: skip
    common = ["train", "--model", "cycle_gan", "--dataroot", data, "--runs_dir", runs, *flags(flat), "--gpus", 2]
    assert cli(*common, "--name", "ddp", "--batch_size", 1, "--max_steps", 3).code == 0
    assert_same_training(weights(runs / "ddp"), weights(runs / "one"), start)
    # with pools: rank 0's pool holds the fakes of its own samples only (one per step), not the global batch's
    assert cli(*common, "--name", "pools", "--batch_size", 1, "--max_steps", 2, "--pool_size", 4).code == 0
    pools = load_file(runs / "pools" / "checkpoints" / "latest.safetensors")
    assert pools["state.pool.A.count"].item() == pools["state.pool.B.count"].item() == 2
