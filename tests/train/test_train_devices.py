"""Devices resolved once into one indexed device (CUDA mocked: these run on any machine)."""

from __future__ import annotations

import pytest
import torch

from pairforge.errors import UsageError
from pairforge.resources import is_out_of_memory
from pairforge.train import devices
from pairforge.train.devices import resolve_device
from pairforge.train.fast import Speed
from tests.train.oom import OUT_OF_MEMORY


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two CUDA GPUs whose current device is cuda:1; records set_device calls."""
    current = []
    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(devices.torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(devices.torch.cuda, "set_device", current.append)
    return current


@pytest.mark.parametrize(
    ("name", "expected"), [("cuda", 1), ("auto", 1), ("cuda:0", 0), ("cuda:1", 1)]
)  # fmt: skip
def test_cuda_is_always_indexed_and_made_current(two_gpus, name, expected):
    device = resolve_device(name)
    assert device == torch.device("cuda", expected) and device.index == expected
    assert two_gpus == [device]  # streams, graphs and torch.cuda.* calls without a device land on it
    assert device != torch.device("cuda")  # why: PyTorch's index-less `cuda` equals no tensor's device


def test_a_launcher_leaves_the_gpu_alone(two_gpus):
    assert resolve_device("cuda", make_current=False) == torch.device("cuda", 0) and two_gpus == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda:2", r"--device cuda:2: this machine has 2 CUDA GPU\(s\): cuda:0 to cuda:1"),
        ("mps", r"--device 'mps': expected auto, cpu, cuda or cuda:N"),
        ("gpu", r"--device 'gpu': expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_impossible_devices_are_one_line_usage_errors(two_gpus, name, message):
    with pytest.raises(UsageError, match=message):
        resolve_device(name)
    assert two_gpus == []


def test_without_cuda(monkeypatch):
    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    with pytest.raises(UsageError, match="--device cuda:0: no CUDA GPU is available here"):
        resolve_device("cuda:0")


@pytest.mark.parametrize("kind", sorted(OUT_OF_MEMORY))
def test_out_of_memory_in_every_form(kind):
    assert is_out_of_memory(OUT_OF_MEMORY[kind]())


@pytest.mark.parametrize(
    "error", [RuntimeError("Expected 4-dimensional input"), ValueError("memory format"), OSError(28, "No space")]
)
def test_other_errors_are_not_out_of_memory(error):
    assert not is_out_of_memory(error)


def test_fast_mode_choices(tiny, tmp_path):
    cuda = torch.device("cuda", 0)
    pix2pix, cycle = tiny(tmp_path), tiny(tmp_path, model="cycle_gan")
    assert Speed.choose(pix2pix, torch.device("cpu")) == Speed()  # CPU: the plain fp32 eager step
    full = Speed.choose(pix2pix, cuda)
    assert full.amp and full.channels_last and full.fused and full.compile and full.cuda_graph
    assert Speed.choose(cycle, cuda).cuda_graph  # the image pools are capturable
    wgangp = Speed.choose(tiny(tmp_path, gan_mode="wgangp"), cuda)
    assert wgangp.cuda_graph and not wgangp.compile  # double backward: captured, not compiled
    assert not Speed.choose(tiny(tmp_path, optimizer="sgd"), cuda).cuda_graph  # no capturable tensor lr
    ddp = Speed.choose(pix2pix, cuda, distributed=True)
    assert not ddp.cuda_graph and ddp.compile and ddp.notes
    assert Speed.choose(tiny(tmp_path, fast=False), cuda) == Speed()
