"""FID, KID and IS through pairforge equal torch-fidelity's own calculate_metrics on the same folders and file."""

from __future__ import annotations

import pytest
import torch

from pairforge.errors import PairforgeError, UsageError
from pairforge.train.data import list_images
from pairforge.train.metrics.fidelity import fidelity
from tests.train.segnets import photo, random_inception, save_png

torch_fidelity = pytest.importorskip("torch_fidelity", reason="needs pairforge[eval]")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    for i in range(4):
        save_png(root / "fake" / f"{i}.png", photo(48, 40, seed=i))
        save_png(root / "real" / f"{i}.png", photo(48, 40, seed=100 + i) // 2)
    return root / "fake", root / "real", random_inception(root / "inception.pth")


def test_equal_to_torch_fidelity_on_the_same_folders(folders):
    fake, real, weights = folders
    ours = fidelity(list(list_images(fake).values()), list(list_images(real).values()), ["fid", "kid", "is"],
                    weights, CPU)  # fmt: skip
    theirs = torch_fidelity.calculate_metrics(
        input1=str(fake), input2=str(real), cuda=False, fid=True, kid=True, isc=True, kid_subset_size=4,
        isc_splits=4, feature_extractor_weights_path=str(weights), cache=False, verbose=False,
    )  # fmt: skip
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-6, abs=1e-12)
    assert ours["is"] == pytest.approx(theirs["inception_score_mean"], rel=1e-6)
    assert ours["count_fake"] == ours["count_real"] == ours["kid_subset_size"] == 4
    assert ours["fid"] > 1e-3


def test_identical_folders_give_fid_zero(folders):
    fake, _, weights = folders
    files = list(list_images(fake).values())
    assert fidelity(files, files, ["fid"], weights, CPU)["fid"] == pytest.approx(0, abs=1e-3)


def test_weight_file_errors(folders, tmp_path):
    fake, _, _ = folders
    files = list(list_images(fake).values())
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    with pytest.raises(PairforgeError, match=r"--inception-weights .*bad\.pth: cannot read"):
        fidelity(files, files, ["fid"], bad, CPU)
    with pytest.raises(UsageError, match="needs real images"):
        fidelity(files, None, ["fid"], bad, CPU)
