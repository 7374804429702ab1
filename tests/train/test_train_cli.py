"""`pairforge train/test/translate` on the command line: a whole small run, and one-line usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TINY = ["--netG", "unet_128", "--ngf", "4", "--ndf", "4", "--load_size", "128", "--crop_size", "128", "--device", "cpu"]


def test_train_continue_test_translate(tmp_path, cli, ab_dataset):
    data, runs = ab_dataset(train=3, test=2), tmp_path / "runs"
    first = cli("train", "--dataroot", data, "--runs_dir", runs, *TINY, "--max_steps", "2", "--json")
    assert first.code == 0, first.err
    summary = first.json()
    assert summary["steps"] == 2 and summary["mode"] == "fp32 eager" and summary["run"].endswith("data_pix2pix")
    again = cli("train", "--dataroot", data, "--runs_dir", runs, *TINY)
    assert again.code == 2 and "already has checkpoints" in again.err
    resumed = cli("train", "--name", "data_pix2pix", "--runs_dir", runs, "--continue", "--max_steps", "4", "--json")
    assert resumed.code == 0, resumed.err
    assert resumed.json()["steps"] == 4
    assert json.loads((runs / "data_pix2pix" / "config.json").read_text())["max_steps"] == 4

    tested = cli("test", "data_pix2pix", "--runs_dir", runs, "--json")
    assert tested.code == 0, tested.err
    assert tested.json()["count"] == 2 and tested.json()["psnr"] > 0
    results = runs / "data_pix2pix" / "results" / "test_latest"
    assert (results / "index.html").is_file() and (results / "metrics.json").is_file()

    translated = cli("translate", runs / "data_pix2pix", data / "test", tmp_path / "out", "-q")
    assert translated.code == 0, translated.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p000.png", "p001.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataroot", "{tmp}/nope"], "error: --dataroot {tmp}/nope: folder not found"),
        (["train", "--device", "cpu"], "error: --dataroot is required"),
        (["train", "--dataroot", "{tmp}", "--crop_size", "abc"], "error: --crop_size 'abc': expected N or WxH"),
        (
            ["train", "--dataroot", "{tmp}", "--crop_size", "300"],
            "error: --crop_size 300 is larger than --load_size 286",
        ),
        (["train", "--name", "x", "--runs_dir", "{tmp}", "--continue"], "error: --continue: no run to continue at"),
        (["test", "{tmp}/missing"], "error: {tmp}/missing: no such run folder, run name"),
        (["translate", "{tmp}/missing", "{tmp}", "{tmp}/out"], "error: {tmp}/missing: no such run folder"),
    ],
)
def test_user_mistakes_are_one_line_errors_with_exit_code_2(tmp_path, cli, args, message):
    result = cli(*[a.format(tmp=tmp_path) for a in args])
    assert result.code == 2
    assert result.err.startswith(message.format(tmp=tmp_path)) and result.err.count("\n") == 1


def test_architecture_flags_are_refused_for_pairforge_checkpoints(tmp_path, cli, ab_dataset):
    data, runs = ab_dataset(train=2, test=1), tmp_path / "runs"
    assert cli("train", "--dataroot", data, "--runs_dir", runs, *TINY, "--max_steps", "1", "-q").code == 0
    result = cli("test", runs / "data_pix2pix", "--netG", "resnet_9blocks")
    assert result.code == 2 and "--netG: only for reference .pth checkpoints" in result.err


def test_help_lists_the_commands_without_importing_torch():
    code = "import sys, pairforge.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "pairforge.cli", "--help"], capture_output=True, text=True).stdout
    assert all(name in out for name in ("train", "test", "translate"))
