"""LPIPS (Zhang et al. 2018) through the `lpips` package, paired outputs and targets only.

The package ships its linear-layer weights (`lpips/weights/v0.1/<net>.pth`, read here with weights_only=True);
the backbone's ImageNet weights normally come from torchvision's download and are read instead from the file
given by `--lpips-backbone` (torchvision's `alexnet-owt-7be5be79.pth` or `vgg16-397923af.pth` state_dict).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pairforge.train.weights import load_into, read_state_dict, require

FLAG = "--lpips-backbone"
BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def origin(net: str) -> str:
    return f"use torchvision's ImageNet {net} state_dict, {BACKBONES[net]} (download.pytorch.org/models/)"


def linear_weights(net: str) -> Path:
    import lpips

    return Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"


def build(net: str, backbone: Path | None, device: torch.device) -> torch.nn.Module:
    """lpips.LPIPS(net) with no download: backbone from `backbone`, linear layers from the package."""
    import lpips

    path = require(backbone, FLAG, origin(net))
    model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    features = {
        f"features.{key.split('.', 1)[1]}": key for key in model.net.state_dict()
    }  # lpips keeps torchvision's feature indices inside its slices: slice2.3.weight is features.3.weight
    state = read_state_dict(path, FLAG)
    backbone_state = {own: state[tv] for tv, own in features.items() if tv in state}
    load_into(model.net, backbone_state, path, FLAG)
    shipped = linear_weights(net)
    lins = read_state_dict(shipped, "lpips package weights")
    load_into(model.lins, {k.removeprefix("lin"): v for k, v in lins.items()}, shipped, "lpips package weights")
    return model.to(device).eval().requires_grad_(False)


def _tensor(path: Path) -> torch.Tensor:
    with Image.open(path) as img:
        return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)


@torch.inference_mode()
def lpips_distances(model: torch.nn.Module, pairs: list[tuple[Path, Path]], device: torch.device,
                    batch_size: int = 16) -> list[float]:  # fmt: skip
    """LPIPS of each (output, target) pair of same-size images, in batches."""
    out: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        a = torch.stack([_tensor(p) for p, _ in chunk]).to(device)
        b = torch.stack([_tensor(q) for _, q in chunk]).to(device)
        out += model(a.float() / 127.5 - 1, b.float() / 127.5 - 1).flatten().tolist()
    return out
