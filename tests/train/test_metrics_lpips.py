"""LPIPS from the lpips package with the backbone read from a file (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from pairforge.errors import PairforgeError, UsageError
from pairforge.train.metrics.lpips import build, lpips_distances
from tests.train.segnets import photo, save_png

lpips = pytest.importorskip("lpips", reason="needs pairforge[eval]")
CPU = torch.device("cpu")


def test_distances_equal_the_package_with_the_same_backbone(tmp_path):
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet()
    backbone = tmp_path / "alexnet.pth"
    torch.save(alexnet.state_dict(), backbone)
    pairs = []
    for i in range(3):
        a = save_png(tmp_path / f"a{i}.png", photo(64, 64, i))
        b = save_png(tmp_path / f"b{i}.png", photo(64, 64, 10 + i))
        pairs.append((a, b))
    ours = lpips_distances(build("alex", backbone, CPU), [*pairs, (pairs[0][0], pairs[0][0])], CPU, batch_size=2)

    reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)  # its shipped linear layers, random backbone
    for index, layer in enumerate(alexnet.features):  # lpips keeps torchvision's indices inside its slices
        for slice_ in reference.net.children():
            if str(index) in slice_._modules:
                slice_._modules[str(index)].load_state_dict(layer.state_dict())
    with torch.no_grad():
        for (a, b), value in zip(pairs, ours, strict=False):
            x, y = (torch.from_numpy(np.array(Image.open(p))) for p in (a, b))
            expected = reference(x.permute(2, 0, 1)[None] / 127.5 - 1, y.permute(2, 0, 1)[None] / 127.5 - 1)
            assert value == pytest.approx(expected.item(), rel=1e-5)
    assert ours[-1] == 0 and min(ours[:3]) > 0


def test_backbone_file_errors(tmp_path):
    with pytest.raises(UsageError, match="--lpips-backbone PATH is required"):
        build("alex", None, CPU)
    wrong = tmp_path / "vgg_for_alex.pth"
    torch.save(torchvision.models.vgg11().features[:2].state_dict(), wrong)
    with pytest.raises(PairforgeError, match="weights do not fit"):
        build("alex", wrong, CPU)
