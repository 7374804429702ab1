"""Background removal: rembg through its own session API with a tiny ONNX model, GrabCut on a real face, fills."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import skimage.data

from pairforge.errors import UsageError
from pairforge.prep.imageio import ImageRejected
from pairforge.prep.transforms import background
from pairforge.prep.transforms.background import (
    Remover,
    composite,
    grabcut_mask,
    open_model,
    parse_fill,
    parse_grabcut,
    parse_rect,
    portrait_seeds,
)
from pairforge.prep.transforms.resize import fit
from tests.prep.portraits import kept_and_removed, portrait
from tests.prep.rembg_model import threshold_model


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A noisy two-colour checkerboard: a background with plenty of its own edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    checker = ((yy // 12 + xx // 12) % 2).astype(np.float32)
    base = np.stack([40 + 60 * checker, 120 + 50 * (1 - checker), 90 + 40 * checker], -1)
    return np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)


def pasted_astronaut(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face and hair, cut as an ellipse, pasted where an aligned CelebA face sits, on a texture;
    centre-cropped and resized like `prep celeba`. Returns (image, subject mask)."""
    head = cv2.resize(skimage.data.astronaut()[5:205, 140:315], (120, 150), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:150, 0:120]
    ellipse = ((yy - 75) / 75) ** 2 + ((xx - 60) / 60) ** 2 <= 1
    canvas, subject = textured(218, 178), np.zeros((218, 178), bool)
    subject[40:190, 29:149] = ellipse
    canvas[subject] = head[ellipse]
    return fit(canvas, (size, size), "cover"), fit(subject.astype(np.uint8), (size, size), "cover", "nearest") > 0


def grown(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = np.ones((2 * abs(pixels) + 1,) * 2, np.uint8)
    return (cv2.dilate if pixels > 0 else cv2.erode)(mask.astype(np.uint8), kernel) > 0


def test_grabcut_removes_most_of_the_background_around_a_real_face():
    image, subject = pasted_astronaut()
    alpha = grabcut_mask(image, (0.1, 0.05, 0.9, 1.0))
    background_px, subject_px = ~grown(subject, 3), grown(subject, -3)
    assert (alpha[background_px] == 0).mean() > 0.95  # removed, including inside the rectangle
    assert (alpha[subject_px] == 255).mean() > 0.95  # the face and hair stay
    filled = composite(image, alpha, (255, 255, 255))
    assert (filled[background_px] == 255).all(axis=1).mean() > 0.95
    assert np.array_equal(grabcut_mask(image, (0.1, 0.05, 0.9, 1.0)), alpha)  # deterministic


def portrait_shares(rect) -> np.ndarray:
    """(kept, removed) of GrabCut from `rect` on six portraits, in CelebA's 178x218 frame and its square centre
    crop (what `prep celeba --size 256` removes the background of)."""
    shares = []
    for seed in range(6):
        photo, person = portrait(seed)
        for rows in (slice(None), slice(20, 198)):
            shares.append(kept_and_removed(grabcut_mask(photo[rows], rect), person[rows]))
    return np.array(shares).T


def test_portrait_seeds_keep_the_whole_person_and_remove_the_background():
    kept, removed = portrait_shares(None)
    assert kept.mean() >= 0.9 and kept.min() >= 0.75  # shoulders and long hair at the frame's sides stay
    assert removed.mean() >= 0.85
    old_kept, old_removed = portrait_shares((0.1, 0.05, 0.9, 1.0))  # the rectangle that was the default
    assert old_kept.mean() < 0.85 and old_removed.mean() > 0.95  # it removed the background and a lot of person
    photo, _ = portrait(0)
    assert np.array_equal(grabcut_mask(photo, None), grabcut_mask(photo, None))  # deterministic


def test_portrait_seeds_fix_the_face_as_subject_and_the_top_corners_as_background():
    for height, width in ((218, 178), (178, 178), (64, 64)):
        seeds = portrait_seeds(height, width)
        assert seeds.shape == (height, width)
        assert seeds[round(height * 0.58), width // 2] == cv2.GC_FGD  # the face
        assert seeds[height - 1, width // 2] == cv2.GC_FGD  # the chest under the chin
        assert seeds[0, 0] == seeds[0, width - 1] == cv2.GC_BGD
        assert seeds[height - 1, 0] == seeds[height - 1, width - 1] == cv2.GC_PR_FGD  # shoulders may reach here


def test_grabcut_refuses_a_rectangle_that_leaves_no_background():
    with pytest.raises(ImageRejected, match="grabcut"):
        grabcut_mask(textured(32, 32), (0.0, 0.0, 1.0, 1.0))


def test_composite_keeps_the_subject_and_fills_the_rest():
    rgb = np.full((2, 3, 3), 100, np.uint8)
    alpha = np.array([[255, 0, 128], [255, 255, 0]], np.uint8)
    out = composite(rgb, alpha, (0, 255, 10))
    assert out[0, 0].tolist() == [100, 100, 100] and out[0, 1].tolist() == [0, 255, 10]
    assert out[0, 2].tolist() == [50, 177, 55]  # 128/255 of the pixel, the rest of the fill


def test_fill_and_rectangle_parsing():
    assert parse_fill("white") == (255, 255, 255) and parse_fill("Black") == (0, 0, 0)
    assert parse_fill("#FF8000") == (255, 128, 0) and parse_fill("00ff00") == (0, 255, 0)
    assert parse_rect("0.1,0.05,0.9,1") == (0.1, 0.05, 0.9, 1.0)
    assert parse_grabcut("portrait") is None and parse_grabcut(" Portrait ") is None
    assert parse_grabcut("0,0.1,1,1") == (0.0, 0.1, 1.0, 1.0)
    for bad in ("grey", "#12345", "#gg0000"):
        with pytest.raises(UsageError, match="--bg-fill"):
            parse_fill(bad)
    for bad in ("0.1,0.1,0.9", "0.9,0,0.1,1", "0,0,1,1.5", "portraits"):
        with pytest.raises(UsageError, match="--grabcut-rect"):
            parse_grabcut(bad)


@pytest.fixture
def fresh_sessions(monkeypatch):
    monkeypatch.setattr(background, "_SESSIONS", {})


def bright_disc(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc (the subject the tiny model finds) on a dark texture, and where the disc is."""
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2 - seed) ** 2 < (size / 3) ** 2
    image = (textured(size, size, seed) // 3).astype(np.uint8)
    image[disc] = (230, 200, 170)
    return image, disc


def test_rembg_runs_the_model_once_per_process_and_fills_the_background(tmp_path, fresh_sessions, monkeypatch):
    import rembg

    home = os.environ.get("U2NET_HOME")
    created = []
    real_new_session = rembg.new_session
    monkeypatch.setattr(rembg, "new_session", lambda *a, **k: created.append(a) or real_new_session(*a, **k))
    model = open_model(str(threshold_model(tmp_path / "u2net.onnx")))
    remover = Remover("rembg", model)
    for seed in range(4):
        image, disc = bright_disc(seed)
        colours, alpha = remover(image)
        assert np.array_equal(colours, image)
        assert (alpha[grown(disc, -3)] == 255).all() and (alpha[~grown(disc, 3)] == 0).all()
        filled = composite(colours, alpha, (0, 0, 255))
        assert (filled[~grown(disc, 3)] == (0, 0, 255)).all()
        assert np.array_equal(filled[grown(disc, -3)], image[grown(disc, -3)])
    assert created == [("u2net_custom",)]  # one session, through rembg's custom-model API, for every image
    assert os.environ.get("U2NET_HOME") == home  # pointed at the model's folder only while opening it


def test_alpha_matting_passes_through_to_rembg(tmp_path, fresh_sessions):
    model = open_model(str(threshold_model(tmp_path / "u2net.onnx")))
    image, disc = bright_disc(0)
    colours, alpha = Remover("rembg", model, alpha_matting=True)(image)
    _, plain = Remover("rembg", model)(image)
    assert colours.shape == image.shape and alpha.shape == disc.shape
    assert not np.array_equal(alpha, plain)  # matting re-estimates the soft edge
    assert (alpha[grown(disc, -4)] > 250).all() and (alpha[~grown(disc, 4)] < 5).all()


def test_models_are_found_by_name_in_rembgs_folder_and_never_downloaded(tmp_path, fresh_sessions, monkeypatch):
    import pooch

    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("a download was attempted"))
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(UsageError, match=r"--bg-model u2net_human_seg: no u2net_human_seg.onnx"):
        open_model("u2net_human_seg")
    threshold_model(tmp_path / "u2net_human_seg.onnx")
    assert open_model("u2net_human_seg").path == str(tmp_path / "u2net_human_seg.onnx")
    with pytest.raises(UsageError, match="neither a model file nor a rembg model name"):
        open_model("my-model")


def test_bad_model_files_are_usage_errors(tmp_path, fresh_sessions):
    (tmp_path / "u2net.onnx").write_bytes(b"not a model")
    with pytest.raises(UsageError, match="cannot load it as an ONNX model"):
        open_model(str(tmp_path / "u2net.onnx"))
    with pytest.raises(UsageError, match=r"takes 1x3x320x320 input"):
        open_model(str(threshold_model(tmp_path / "small" / "u2netp.onnx", side=64)))
    with pytest.raises(UsageError, match="1x3x1024x1024"):
        open_model(str(threshold_model(tmp_path / "isnet-general-use.onnx")))  # IS-Net models are 1024
    with pytest.raises(UsageError, match="not supported"):
        open_model(str(threshold_model(tmp_path / "birefnet-portrait.onnx")))


def test_cuda_without_its_provider_is_a_usage_error(tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(UsageError, match=r"--bg-device cuda: .*onnxruntime-gpu"):
        open_model(str(threshold_model(tmp_path / "u2net.onnx")), device="cuda")
