"""`pairforge eval` on a whole small run: prep cityscapes -> train -> test -> eval -> --compare; usage errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("cityscapesscripts", reason="FCN-score labels need cityscapesscripts (pairforge[cityscapes])")

from pairforge.recipes import RECIPES_DIR, load
from pairforge.run import build_stages
from pairforge.train.metrics.fcn import cityscapes_lut
from tests.prep.test_cityscapes import make_frame
from tests.train.segnets import export_seg, photo, save_png

TINY = ["--netG", "unet_128", "--ngf", "4", "--ndf", "4", "--load_size", "128", "--crop_size", "128", "--device", "cpu"]


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    return export_seg(tmp_path_factory.mktemp("seg"))[0]


def test_run_fcn_score_pixel_metrics_and_compare(tmp_path, cli, seg):
    raw, data, runs = tmp_path / "raw", tmp_path / "cityscapes", tmp_path / "runs"
    for seed in range(3):
        make_frame(raw, "val", "frankfurt", 0, seed, seed)  # official val -> test split
    make_frame(raw, "train", "aachen", 0, 19, 9)
    assert cli("prep", "cityscapes", raw, data, "--size", "128", "--workers", "1", "-q").code == 0
    trained = cli("train", "--dataroot", data, "--runs_dir", runs, "--name", "cs", "--direction", "BtoA", *TINY,
                  "--max_steps", "1", "-q")  # fmt: skip
    assert trained.code == 0, trained.err
    assert cli("test", "cs", "--runs_dir", runs, "-q").code == 0
    run = runs / "cs"

    result = cli("eval", run, "--metrics", "pixel,fcn", "--seg-model", seg, "--eval-size", "native",
                 "--workers", "0", "--device", "cpu", "--json")  # fmt: skip
    assert result.code == 0, result.err
    metrics = json.loads((run / "results" / "eval" / "metrics.json").read_text())
    test = json.loads((run / "results" / "test_latest" / "metrics.json").read_text())
    assert metrics["count"] == 3 and metrics["l1"] == test["l1"] and metrics["psnr"] == test["psnr"]
    assert metrics["weights"]["--seg-model"]["sha256"] == hashlib.sha256(seg.read_bytes()).hexdigest()
    assert (
        metrics["fcn"]["protocol"]["eval_size"] == "native"
        and metrics["fcn"]["protocol"]["resize_filter"] == "bilinear"
    )
    assert {"torch", "onnxruntime", "cityscapesscripts"} <= set(metrics["versions"])
    labels = sorted((raw / "gtFine" / "val" / "frankfurt").glob("*_gtFine_labelIds.png"))
    counted = sum(int((cityscapes_lut()[np.array(Image.open(p))] != 255).sum()) for p in labels)
    assert metrics["fcn"]["pixels"] == counted  # every labelIds file found through the manifest, at native size
    assert np.array(metrics["fcn"]["confusion"]).sum() == counted
    assert 0 <= metrics["fcn_class_iou"] <= metrics["fcn_class_acc"] <= 1
    assert len(metrics["fcn"]["per_class"]) == 19 and metrics["fcn"]["per_class"][0]["class"] == "road"

    assert cli("report", run).code == 0
    report = (run / "report.html").read_text()
    assert f"fcn_pixel_acc {metrics['fcn_pixel_acc']:.4g}" in report  # the report lists results/eval

    real = cli("eval", run, "--metrics", "fcn", "--seg-model", seg, "--fcn-real", "--workers", "0", "--device", "cpu",
               "--out", tmp_path / "real.json", "-q")  # fmt: skip
    assert real.code == 0, real.err
    table = tmp_path / "table1"
    compared = cli("eval", "--compare", run, tmp_path / "real.json", "--paper", "pix2pix-cityscapes", "--table", table)
    assert compared.code == 0, compared.err
    lines = table.with_suffix(".csv").read_text().splitlines()
    assert lines[0].startswith("run,per-pixel acc.,per-class acc.,class IoU")
    assert lines[1].startswith(f"cs,{metrics['fcn_pixel_acc']}") and "(real photos)" in lines[2]
    assert lines[-1] == "paper: ground truth,0.8,0.26,0.21,,,"
    assert "| paper: L1+cGAN | 0.66 | 0.23 | 0.17 |" in table.with_suffix(".md").read_text()


def test_folders_and_one_line_errors(tmp_path, cli, seg):
    for i in range(2):
        save_png(tmp_path / "fake" / f"k{i}.png", photo(16, 16, i))
        save_png(tmp_path / "real" / f"k{i}.png", photo(16, 16, i))
    same = cli("eval", "--fake", tmp_path / "fake", "--real", tmp_path / "real", "--json")
    assert same.code == 0, same.err
    assert same.json()["l1"] == 0 and same.json()["psnr"] == 100
    cases = [
        (["--metrics", "fcn", "--seg-model", tmp_path / "none.pt"], "--seg-model"),
        (["--metrics", "fcn"], "--seg-model PATH is required (weights are never downloaded"),
        (["--metrics", "fid"], "--inception-weights PATH is required"),
        (["--metrics", "lpips"], "--lpips-backbone PATH is required"),
        (["--metrics", "fcn", "--seg-model", seg], "no gtFine labelIds for 'k0'"),
        (["--metrics", "psnr"], "--metrics 'psnr': choose from pixel, fcn, fid, kid, is, lpips"),
        (["--eval-size", "big"], "--eval-size 'big'"),
    ]
    for args, message in cases:
        result = cli("eval", "--fake", tmp_path / "fake", "--real", tmp_path / "real", "--device", "cpu", *args)
        assert result.code == 2 and message in result.err and "Traceback" not in result.err, (args, result.err)
    assert "no such run folder" in cli("eval", tmp_path / "nothing").err


def test_cityscapes_recipe_runs_the_fcn_score_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw" / "cityscapes").mkdir(parents=True)
    loaded = load(RECIPES_DIR / "cityscapes.toml", "l1", data_root=tmp_path / "raw")
    stage = next(s for s in build_stages(loaded) if s.name == "eval")
    model = str(tmp_path / "raw" / "models" / "fcn8s_cityscapes.onnx")
    assert stage.argv == ["eval", "runs/cityscapes_l1", "--metrics", "pixel,fcn", "--seg-model", model,
                          "--eval-size", "native"]  # fmt: skip
