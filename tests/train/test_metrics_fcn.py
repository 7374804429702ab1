"""FCN-score: both loaders, the protocol's resizing, tiling, and the numbers against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pairforge.errors import PairforgeError, UsageError
from pairforge.train.metrics.confusion import IGNORE
from pairforge.train.metrics.fcn import (
    FcnDataset,
    FcnProtocol,
    cityscapes_lut,
    fcn_score,
    normalise,
    predict,
    predict_fitting,
)
from pairforge.train.metrics.inputs import Sample
from pairforge.train.metrics.segmenters import load_segmenter
from tests.train.oom import OUT_OF_MEMORY
from tests.train.segnets import TinySeg, export_seg, label_ids, photo, save_png

pytest.importorskip("cityscapesscripts", reason="FCN-score labels need cityscapesscripts (pairforge[cityscapes])")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def seg_files(tmp_path_factory):
    return export_seg(tmp_path_factory.mktemp("seg"))


@pytest.fixture
def samples(tmp_path) -> list[Sample]:
    """Three 32x24 outputs with 64x48 labelIds (native = twice the output size)."""
    out = []
    for i in range(3):
        fake = save_png(tmp_path / f"k{i}_fake.png", photo(32, 24, seed=i))
        real = save_png(tmp_path / f"k{i}_real.png", photo(32, 24, seed=10 + i))
        label = save_png(tmp_path / f"k{i}_gtFine_labelIds.png", label_ids(64, 48, seed=i))
        out.append(Sample(f"k{i}", fake, real, label))
    return out


def _direct(samples: list[Sample], size: tuple[int, int] | None, real: bool = False) -> np.ndarray:
    """The confusion matrix computed by hand: PIL resize, the network in eager mode, NumPy counting."""
    net, lut, protocol = TinySeg().eval(), cityscapes_lut(), FcnProtocol(size)
    matrix = np.zeros((19, 19), np.int64)
    for s in samples:
        label = Image.open(s.label)
        image = Image.open(s.real if real else s.fake).convert("RGB")
        target_size = size or label.size
        image = image.resize(target_size, Image.Resampling.BILINEAR) if image.size != target_size else image
        label = label.resize(target_size, Image.Resampling.NEAREST) if label.size != target_size else label
        with torch.no_grad():
            pred = net(normalise(torch.from_numpy(np.array(image))[None], protocol)).argmax(1)[0].numpy()
        trainids = lut[np.array(label)]
        keep = trainids != IGNORE
        np.add.at(matrix, (trainids[keep], pred[keep]), 1)
    return matrix


@pytest.mark.parametrize("size", [(32, 24), None], ids=["eval-size", "native"])
def test_torchscript_and_onnx_give_the_direct_confusion_matrix(seg_files, samples, size):
    expected = _direct(samples, size)
    results = [
        fcn_score(samples, load_segmenter(path, CPU), FcnProtocol(size), CPU, batch_size=2) for path in seg_files
    ]
    for result in results:
        assert np.array_equal(np.array(result["confusion"]), expected)
        assert result["count"] == 3
        diag = np.diag(expected)
        assert result["pixel_acc"] == pytest.approx(diag.sum() / expected.sum())
    assert expected.sum() == sum((cityscapes_lut()[label_ids(*(size or (64, 48)), seed=i)] != IGNORE).sum()
                                 for i in range(3)) or size is not None  # fmt: skip


def test_real_scores_the_targets(seg_files, samples):
    result = fcn_score(samples, load_segmenter(seg_files[0], CPU), FcnProtocol((32, 24), real=True), CPU)
    assert np.array_equal(np.array(result["confusion"]), _direct(samples, (32, 24), real=True))


def test_labels_are_resized_nearest_never_interpolated(samples):
    _, label = FcnDataset(samples[:1], FcnProtocol((32, 24)))[0]
    source = Image.open(samples[0].label)
    expected = cityscapes_lut()[np.array(source.resize((32, 24), Image.Resampling.NEAREST))]
    assert label.shape == (24, 32)
    assert np.array_equal(label.numpy(), expected)
    assert set(np.unique(label.numpy())) <= {0, 1, 2, 10, IGNORE}  # road, sidewalk, building, sky, ignored
    image, label = FcnDataset(samples[:1], FcnProtocol(None))[0]
    assert image.shape == (48, 64, 3) and np.array_equal(label.numpy(), cityscapes_lut()[label_ids(64, 48, 0)])


def test_tiles_with_a_halo_give_the_whole_image_result(seg_files):
    seg = load_segmenter(seg_files[0], CPU)
    x = torch.randn(2, 3, 45, 70)
    whole = predict(seg, x)
    assert torch.equal(predict(seg, x, tile=16, halo=2), whole)  # two 3x3 convs: 2 pixels of context suffice
    assert not torch.equal(predict(seg, x, tile=8, halo=0), whole)
    with pytest.raises(PairforgeError, match=r"expected N x 34 x 45 x 70 scores, got \(2, 19, 45, 70\)"):
        predict(seg, x, classes=34)


class SmallMemory:
    """A segmenter that runs out of memory on inputs larger than `pixels`, the way `kind` reports it."""

    def __init__(self, seg, pixels: int, kind: str = "torch") -> None:
        self.seg, self.pixels, self.sizes, self.kind = seg, pixels, [], kind

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[2:]))
        if x.shape[2] * x.shape[3] > self.pixels:
            raise OUT_OF_MEMORY[self.kind]()
        return self.seg(x)


def test_other_errors_of_the_segmenter_are_not_taken_for_running_out_of_memory(seg_files):
    class Broken:
        def __call__(self, x):
            raise RuntimeError("Expected 4-dimensional input for 4-dimensional weight")

    with pytest.raises(RuntimeError, match="4-dimensional"):
        predict_fitting(Broken(), torch.randn(1, 3, 64, 64), None, 2, 19)


@pytest.mark.parametrize("kind", sorted(OUT_OF_MEMORY))
def test_running_out_of_memory_tiles_by_itself_with_the_same_result(seg_files, kind):
    seg = load_segmenter(seg_files[0], CPU)
    x = torch.randn(1, 3, 200, 300)
    small = SmallMemory(seg, 140 * 140, kind)
    pred, tile = predict_fitting(small, x, None, 2, 19)
    assert tile == 128 and torch.equal(pred, predict(seg, x))  # 300 -> 128: the halo keeps it exact
    assert small.sizes[0] == (200, 300) and max(h * w for h, w in small.sizes[1:]) <= 132 * 132
    with pytest.raises(PairforgeError, match=r"out of memory segmenting 1 x 200x300: .* give --seg-halo"):
        predict_fitting(SmallMemory(seg, 140 * 140), x, None, 0, 19)  # no halo: tiles could change the result
    with pytest.raises(PairforgeError, match="out of memory segmenting 1 x 200x300 in tiles of 64"):
        predict_fitting(SmallMemory(seg, 10), x, None, 2, 19)


def test_missing_labels_and_bad_model_files_are_one_line_errors(seg_files, samples, tmp_path):
    unlabeled = [Sample("x", samples[0].fake, None, None)]
    with pytest.raises(UsageError, match="no gtFine labelIds for 'x'"):
        fcn_score(unlabeled, load_segmenter(seg_files[0], CPU), FcnProtocol(None), CPU)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(PairforgeError, match="not a TorchScript file"):
        load_segmenter(bad, CPU)
    with pytest.raises(UsageError, match=r"expected a TorchScript \.pt or an ONNX \.onnx"):
        load_segmenter(tmp_path / "model.pth", CPU)


def test_a_corrupt_image_read_in_a_worker_is_one_line(seg_files, samples, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    seg = load_segmenter(seg_files[0], CPU)
    with pytest.raises(PairforgeError) as info:
        fcn_score([Sample("b", bad, None, samples[0].label)], seg, FcnProtocol(None), CPU, workers=1)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{bad}: cannot read image")
