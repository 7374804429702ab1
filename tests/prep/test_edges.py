"""Canny edge drawings: thresholds (fixed and auto), pre-blur, thickness, style, and edges kept to the subject."""

from __future__ import annotations

import numpy as np
import pytest

from pairforge.errors import UsageError
from pairforge.prep.transforms.edges import EdgeSpec, auto_thresholds, edge_image, edge_map, parse_canny


def steps(weak: int = 40, strong: int = 150) -> np.ndarray:
    """A 64x64 grey image with a weak vertical step at x=16 and a strong one at x=48."""
    image = np.full((64, 64), 60, np.uint8)
    image[:, 16:] += weak
    image[:, 48:] = 60 + weak + strong
    return np.repeat(image[:, :, None], 3, axis=2)


def columns(edges: np.ndarray) -> set[int]:
    return set(np.nonzero(edges[32])[0].tolist())


def test_thresholds_select_edges_by_gradient_strength():
    # Sobel's L1 gradient across a step of height h is 4h: 160 for the weak step, 600 for the strong one
    assert columns(edge_map(steps(), EdgeSpec((200, 400)))) <= {47, 48}
    assert columns(edge_map(steps(), EdgeSpec((200, 400))))
    both = columns(edge_map(steps(), EdgeSpec((50, 100))))
    assert both & {15, 16} and both & {47, 48}
    assert not edge_map(steps(), EdgeSpec((700, 800))).any()
    assert not edge_map(np.full((32, 32, 3), 128, np.uint8), EdgeSpec((1, 2))).any()


def test_auto_thresholds_come_from_the_median_of_the_subject():
    gray = np.array([[10, 20, 30], [200, 210, 220]], np.uint8)
    assert auto_thresholds(gray) == pytest.approx((0.67 * 115, 1.33 * 115))
    subject = np.array([[False] * 3, [True] * 3])
    assert auto_thresholds(gray, subject) == pytest.approx((0.67 * 210, 255.0))  # high capped at 255
    assert auto_thresholds(gray, np.zeros_like(subject)) == auto_thresholds(gray)  # no subject: whole image


def test_style_and_thickness():
    black_on_white = edge_image(steps(), EdgeSpec((50, 100)))
    white_on_black = edge_image(steps(), EdgeSpec((50, 100), style="white-on-black"))
    assert black_on_white.shape == (64, 64, 3) and black_on_white.dtype == np.uint8
    assert set(np.unique(black_on_white)) == {0, 255}
    assert np.array_equal(white_on_black, 255 - black_on_white)
    thin = edge_map(steps(), EdgeSpec((200, 400)))[32].sum()
    thick = edge_map(steps(), EdgeSpec((200, 400), thickness=3))[32].sum()
    assert thin == 1 and thick == 3


def test_blur_suppresses_noise_edges_but_keeps_the_outline():
    rng = np.random.default_rng(0)
    noisy = np.clip(steps().astype(int) + rng.normal(0, 12, (64, 64, 1)), 0, 255).astype(np.uint8)
    raw = edge_map(noisy, EdgeSpec((100, 200)))
    blurred = edge_map(noisy, EdgeSpec((100, 200), blur=1.5))
    assert blurred.sum() < raw.sum() / 2
    assert blurred[:, 44:52].any(axis=1).mean() > 0.9  # the strong step survives on (almost) every row


def test_edges_lie_only_inside_the_subject():
    image = steps()
    subject = np.zeros((64, 64), bool)
    subject[:, 30:] = True
    edges = edge_map(image, EdgeSpec((50, 100), thickness=3), subject)
    assert edges.any() and not edges[:, :30].any()
    assert edge_map(image, EdgeSpec((50, 100), thickness=3))[:, :30].any()  # without the subject they are there


@pytest.mark.parametrize("text", ["100", "a,b", "200,100", "-1,5"])
def test_bad_canny_values_are_usage_errors(text):
    with pytest.raises(UsageError, match="--canny"):
        parse_canny(text)


def test_canny_values_parse():
    assert parse_canny("auto") is None and parse_canny("AUTO") is None
    assert parse_canny("50,150") == (50.0, 150.0)
    with pytest.raises(UsageError, match="--edge-style"):
        EdgeSpec(style="pencil")
