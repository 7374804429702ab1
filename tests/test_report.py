"""`report.html`: one file with every image inside, loss panels by scale, training samples, the trivial baseline."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
from PIL import Image

from pairforge.report import identity_l1, loss_panels, write_report
from tests.conftest import pattern, save


def test_loss_panels_split_by_scale():
    curves = {"D_real": [0.6, 0.4], "D_fake": [0.5, 0.3], "G_GAN": [1.5, 2.0], "G_L1": [40.0, 12.0]}
    assert loss_panels(curves) == [["D_fake", "D_real", "G_GAN"], ["G_L1"]]
    assert loss_panels({"cycle_A": [2.0], "cycle_B": [2.5]}) == [["cycle_A", "cycle_B"]]


def test_report_is_self_contained_with_samples_and_baseline(tmp_path):
    run = tmp_path / "run"
    (run / "config.json").parent.mkdir()
    (run / "config.json").write_text(json.dumps({"dataroot": None}))
    log = [{"step": s, "G_GAN": 1.0, "G_L1": 30.0 - s, "D_real": 0.5, "D_fake": 0.4} for s in range(1, 6)]
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    grid = save(run / "samples" / "step_0000005.png", pattern(24, 8))
    images = run / "results" / "test_latest" / "images"
    gray = np.full((8, 8, 3), 100, np.uint8)
    for key, target in (("k0", 100), ("k1", 151)):  # |input - target| / 255: 0 and 0.2
        save(images / f"{key}_real_A.png", gray)
        save(images / f"{key}_fake_B.png", gray)
        save(images / f"{key}_real_B.png", np.full((8, 8, 3), target, np.uint8))
    metrics = {"count": 2, "l1": 0.05, "psnr": 20.0}
    (images.parent / "metrics.json").write_text(json.dumps(metrics))
    assert abs(identity_l1(images) - 0.1) < 1e-12

    page = write_report(run).read_text()
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 1 + 1 + 2 * 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    alts = re.findall(r"alt='([^']*)'", page)
    assert alts[0] == "loss curves by training step, one panel per scale: D_fake, D_real, G_GAN; G_L1"
    assert alts[1] == "training sample step_0000005: input | output | target" and "k1 target" in alts
    embedded = base64.b64decode(sources[1].split(",", 1)[1])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(embedded))), np.asarray(Image.open(grid)))
    with Image.open(io.BytesIO(base64.b64decode(sources[0].split(",", 1)[1]))) as plot:
        assert plot.width > 2 * plot.height  # two panels side by side
    assert "L1 0.05 against 0.1 for the trivial baseline" in page and "50% of the baseline" in page
    assert not list(run.glob("*.png"))  # nothing beside the report
