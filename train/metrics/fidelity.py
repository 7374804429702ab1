"""FID, KID and IS through torch-fidelity, with the Inception weights read from a file given by flag.

The file (torch-fidelity's `pt_inception-2015-12-05-6726825d.pth`, or the same state_dict as safetensors) is
read safely here and handed to torch-fidelity as a fresh state_dict file of plain tensors in a private folder,
so nothing is downloaded and no file of unknown origin is unpickled. Images stream in batches (torch-fidelity's
DataLoader); KID's subset size is the smaller of 1000 and the number of images, so small sets still get a
mean and a std.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pairforge.errors import UsageError
from pairforge.train.weights import read_state_dict

FLAG = "--inception-weights"
ORIGIN = (
    "use torch-fidelity's pt_inception-2015-12-05-6726825d.pth from https://github.com/toshas/torch-fidelity/releases"
)
KID_SUBSET = 1000
IS_SPLITS = 10


class ImageFiles(Dataset):
    """uint8 3xHxW RGB tensors of image files, as torch-fidelity reads a folder."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as img:
            return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)


def fidelity(
    fakes: list[Path],
    reals: list[Path] | None,
    metrics: list[str],
    weights: Path,
    device: torch.device,
    batch_size: int = 64,
) -> dict:
    """`metrics` from fid, kid, is (IS of the fakes only) -> {fid, kid, kid_std, is, is_std, counts}."""
    import torch_fidelity

    paired = {"fid", "kid"} & set(metrics)
    if paired and not reals:
        raise UsageError(f"--metrics {','.join(sorted(paired))}: needs real images (a run's targets or --real DIR)")
    count = min(len(fakes), len(reals)) if reals else len(fakes)
    with tempfile.TemporaryDirectory() as tmp:
        state_file = Path(tmp) / "inception.pth"
        torch.save(read_state_dict(weights, FLAG), state_file)
        raw = torch_fidelity.calculate_metrics(
            input1=ImageFiles(fakes),
            input2=ImageFiles(reals) if reals else None,
            cuda=device.type == "cuda",
            batch_size=batch_size,
            fid="fid" in metrics,
            kid="kid" in metrics,
            isc="is" in metrics,
            feature_extractor_weights_path=str(state_file),
            kid_subset_size=min(KID_SUBSET, count),
            isc_splits=min(IS_SPLITS, len(fakes)),
            cache=False,
            verbose=False,
        )
    names = {
        "frechet_inception_distance": "fid",
        "kernel_inception_distance_mean": "kid",
        "kernel_inception_distance_std": "kid_std",
        "inception_score_mean": "is",
        "inception_score_std": "is_std",
    }
    result = {names[k]: float(v) for k, v in raw.items() if k in names}
    return result | {
        "count_fake": len(fakes),
        "count_real": len(reals or []),
        "kid_subset_size": min(KID_SUBSET, count),
    }


def settings(metrics: list[str]) -> dict:
    """What torch-fidelity computed with (for metrics.json)."""
    import torch_fidelity

    return {"library": f"torch-fidelity {torch_fidelity.__version__}", "feature_extractor": "inception-v3-compat",
            "metrics": metrics, "is_splits_max": IS_SPLITS, "kid_subset_size_max": KID_SUBSET}  # fmt: skip
