"""`pairforge prep nyu`: a miniature `nyu_depth_v2_labeled.mat` (MATLAB v7.3 = HDF5, arrays stored with MATLAB's
axes reversed, holes in rawDepths) and `splits.mat` -> orientation, splits, crops, sparse inputs, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from pairforge.prep.transforms.depth import DepthCoding
from tests.conftest import load, read_manifest, same_files

N, H, W = 5, 12, 16  # the real file holds 1449 frames of 480x640
MAT = "nyu_depth_v2_labeled.mat"
MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def image(k: int) -> np.ndarray:
    """Frame k (1-based) as MATLAB shows it, HxWx3: R rises to the right, G downwards, and a white marker
    block in the top-left corner, so any transposition or mirroring shows."""
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.dstack([xx * 15, yy * 20, np.full((H, W), k * 40)]).astype(np.uint8)
    rgb[:2, :3] = 255
    return rgb


def depth(k: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (1 + 0.25 * xx + 0.01 * yy + k).astype(np.float32)


def raw_depth(k: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    raw = depth(k)
    raw[(xx + 2 * yy + k) % 3 == 0] = 0  # the Kinect's holes
    raw[:, :2] = 0
    return raw


def make_mat(path, n: int = N, arrays: tuple[str, ...] = ("images", "depths", "rawDepths")):
    """Write the .mat as MATLAB v7.3 does: HDF5 after a 512-byte text header, column-major arrays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = range(1, n + 1)
    stored = {
        "images": np.stack([image(k).transpose(2, 1, 0) for k in frames]),  # (N, 3, W, H)
        "depths": np.stack([depth(k).T for k in frames]),  # (N, W, H)
        "rawDepths": np.stack([raw_depth(k).T for k in frames]),
        "labels": np.zeros((n, W, H), np.uint16),
    }
    with h5py.File(path, "w", userblock_size=512) as f:
        for name in (*arrays, "labels"):
            f.create_dataset(name, data=stored[name], chunks=(1, *stored[name].shape[1:]), compression="gzip")
    with path.open("r+b") as fh:
        fh.write(MATLAB_HEADER.ljust(128))
    return path


def make_splits(path, train=(1, 2, 4), test=(3,)):
    savemat(path, {"trainNdxs": np.array(train, float)[:, None], "testNdxs": np.array(test, float)[:, None]})
    return path


@pytest.fixture
def nyu_root(tmp_path):
    root = tmp_path / "nyu"
    make_mat(root / MAT)
    make_splits(root / "splits.mat")
    return root


def read16(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "I;16", img.mode
        return np.asarray(img).astype(np.uint16)


def test_orientation_exact_pixels_and_official_split(nyu_root, tmp_path, cli):
    out = tmp_path / "out"
    args = ["--crop", "none", "--size", f"{W}x{H}", "--depth-encoding", "gray16", "--workers", "1", "--json"]
    result = cli("prep", "nyu", nyu_root, out, *args)
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    assert manifest["counts"] == {"test": 1, "train": 3}
    assert manifest["options"]["splits"] == str(nyu_root / "splits.mat") and manifest["options"]["split"] is None
    splits = {it["key"]: it["split"] for it in manifest["items"]}
    assert splits == {"0001": "train", "0002": "train", "0003": "test", "0004": "train"}
    assert manifest["rejected"] == [
        {
            "paths": {"images": f"{MAT}#5", "depths": f"{MAT}#5"},
            "reason": "not in splits.mat",
            "kind": "not in splits.mat",
        }
    ]
    for key, split in splits.items():
        k = int(key)
        rgb = load(out / split / "A" / f"{key}.png")
        assert rgb.shape == (H, W, 3)
        assert np.array_equal(rgb, image(k))  # not transposed, not mirrored: the marker is top-left
        assert (rgb[:2, :3] == 255).all()
        metres = DepthCoding("gray16", 10, 1000).decode(read16(out / split / "B" / f"{key}.png"))
        assert np.allclose(metres, depth(k), atol=0.0005)  # millimetres
        assert metres[0, -1] > metres[0, 0] and metres[-1, 0] > metres[0, 0]


def test_default_centre_crop_color_ab_and_split_without_splits_mat(tmp_path, cli):
    mat = make_mat(tmp_path / "nyu" / MAT, arrays=("images", "depths"))
    out = tmp_path / "out"
    result = cli("prep", "nyu", mat, out, "--size", "12", "--split", "2,1,1", "--workers", "1", "--json")
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    assert manifest["counts"] == {"test": 1, "train": 2, "val": 1}
    assert manifest["layouts"] == ["ab"] and manifest["options"]["splits"] is None
    assert [r["reason"] for r in manifest["rejected"]] == ["beyond --split counts (2,1,1)"]
    item = manifest["items"][0]
    pair = load(out / item["outputs"][0]["path"])
    assert pair.shape == (12, 24, 3)
    k = int(item["key"])
    assert np.array_equal(pair[:, :12], image(k)[:, 2:14])  # centred full-height square window
    metres = DepthCoding("color", 10, 1000).decode(pair[:, 12:])
    assert np.abs(metres - depth(k)[:, 2:14]).max() <= 10 / 255 / 2 + 1e-4


def test_sparse2dense_keeps_holes_and_samples_points_per_key(nyu_root, tmp_path, cli):
    base = ["--task", "sparse2dense", "--crop", "none", "--size", f"{W}x{H}", "--depth-encoding", "gray16"]
    out = tmp_path / "holes"
    assert cli("prep", "nyu", nyu_root, out, *base, "--validity-mask", "--workers", "1", "-q").code == 0
    sparse = read16(out / "train" / "A" / "0002.png")
    assert np.array_equal(sparse == 0, raw_depth(2) == 0)  # holes stay holes
    assert np.allclose(sparse[sparse > 0] / 1000, raw_depth(2)[sparse > 0], atol=0.0005)
    assert read16(out / "train" / "B" / "0002.png").min() > 0  # filled depths
    assert (np.asarray(Image.open(out / "train" / "B_valid" / "0002.png")) == 255).all()

    sampled = tmp_path / "sampled"
    result = cli("prep", "nyu", nyu_root, sampled, *base, "--samples", "7", "--workers", "2", "--json")
    assert result.code == 0, result.err
    spots = {}
    for key, split in (("0001", "train"), ("0002", "train"), ("0003", "test")):
        a = read16(sampled / split / "A" / f"{key}.png")
        assert np.count_nonzero(a) == 7
        measured = raw_depth(int(key))
        assert (measured[a > 0] > 0).all()  # only real measurements, never filled-in values
        assert np.allclose(a[a > 0] / 1000, measured[a > 0], atol=0.0005)
        spots[key] = frozenset(np.flatnonzero(a).tolist())
    assert len(set(spots.values())) == 3  # drawn per key
    again = tmp_path / "again"
    assert cli("prep", "nyu", nyu_root, again, *base, "--samples", "7", "--workers", "1", "-q").code == 0
    assert same_files(again) == same_files(sampled)  # byte-identical re-run


def test_random_crops_share_their_frame_split_and_repeat_exactly(nyu_root, tmp_path, cli):
    args = ["--crop", "random", "--crops-per-image", "3", "--crop-width", "8", "--size", "8x12", "--workers", "1"]
    out = tmp_path / "out"
    assert cli("prep", "nyu", nyu_root, out, *args, "-q").code == 0
    manifest = read_manifest(out)
    assert len(manifest["items"]) == 4 * 3
    lefts = set()
    for item in manifest["items"]:
        frame = item["key"].split("_c")[0]
        assert item["split"] == ("test" if frame == "0003" else "train")
        rgb = load(out / item["outputs"][0]["path"])[:, :8]
        left = int(rgb[-1, 0, 0]) // 15
        assert np.array_equal(rgb, image(int(frame))[:, left : left + 8])
        lefts.add(left)
    assert len(lefts) > 2
    again = tmp_path / "again"
    assert cli("prep", "nyu", nyu_root, again, *args, "-q").code == 0
    assert same_files(again) == same_files(manifest)


def test_explicit_split_overrides_splits_mat_beside_it(nyu_root, tmp_path, cli):
    out = tmp_path / "out"
    assert cli("prep", "nyu", nyu_root, out, "--split", "1,0,0", "--size", "8", "--workers", "1", "-q").code == 0
    manifest = read_manifest(out)
    assert manifest["counts"] == {"train": 5} and manifest["options"]["splits"] is None


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("text", [], "is not a MATLAB v7.3 (HDF5) file"),
        ("no-raw", ["--task", "sparse2dense"], "has no 'rawDepths' array"),
        ("ok", ["--splits", "x.mat", "--split", "1,0,0"], "not both"),
        ("bad-splits", [], "testNdxs names frame 9, but nyu_depth_v2_labeled.mat has 5 frames"),
        ("ok", ["--samples", "5"], "needs --task sparse2dense"),
        ("ok", ["--depth-encoding", "gray16", "--max-depth", "70"], "at most 65.535"),
        ("missing", [], "nyu_depth_v2_labeled.mat does not exist"),
    ],
)
def test_bad_inputs_are_one_line_usage_errors(tmp_path, cli, setup, args, message):
    root = tmp_path / "nyu"
    root.mkdir()
    if setup == "text":
        (root / MAT).write_text("<html>404</html>")
    elif setup != "missing":
        make_mat(root / MAT, arrays=("images", "depths") if setup == "no-raw" else ("images", "depths", "rawDepths"))
    if setup == "bad-splits":
        make_splits(root / "splits.mat", test=(3, 9))
    result = cli("prep", "nyu", root, tmp_path / "out", *args)
    assert result.code == 2 and message in result.err, result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
