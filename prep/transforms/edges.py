"""Canny edge maps as sketch-like images: fixed or median-based thresholds, pre-blur, line thickness, style.

Edges are computed on the 8-bit luma of an RGB image. With a subject mask (from background removal), `auto`
thresholds come from the subject's median only, and edges are kept only where the subject is, so a filled
background contributes nothing but the subject's outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pairforge.errors import UsageError
from pairforge.parsing import parse_list

EDGE_STYLES = ("black-on-white", "white-on-black")
AUTO_SIGMA = 0.33  # auto thresholds: (1 - s) * median and (1 + s) * median


@dataclass(frozen=True)
class EdgeSpec:
    """How edges are drawn: `thresholds` (low, high) or None for auto, Gaussian `blur` sigma (0 = none),
    line `thickness` in pixels and `style`."""

    thresholds: tuple[float, float] | None = None
    blur: float = 0.0
    thickness: int = 1
    style: str = "black-on-white"

    def __post_init__(self) -> None:
        if self.style not in EDGE_STYLES:
            raise UsageError(f"--edge-style {self.style!r}: choose from {', '.join(EDGE_STYLES)}")
        if self.thickness < 1:
            raise UsageError(f"--thickness {self.thickness}: must be 1 or more pixels")
        if self.blur < 0:
            raise UsageError(f"--blur {self.blur}: must be 0 (off) or a positive sigma")


def parse_canny(text: str) -> tuple[float, float] | None:
    """`--canny LOW,HIGH` (0..255-scale gradient thresholds, LOW <= HIGH) or `auto` (None)."""
    if text.strip().lower() == "auto":
        return None
    low, high = parse_list(text, "--canny", float, length=2)
    if not 0 <= low <= high:
        raise UsageError(f"--canny {text!r}: expected LOW,HIGH with 0 <= LOW <= HIGH, or auto")
    return low, high


def auto_thresholds(gray: np.ndarray, subject: np.ndarray | None = None) -> tuple[float, float]:
    """Thresholds around the median intensity of the subject (all pixels when there is no subject)."""
    values = gray[subject] if subject is not None and subject.any() else gray
    median = float(np.median(values))
    return max(0.0, (1 - AUTO_SIGMA) * median), min(255.0, (1 + AUTO_SIGMA) * median)


def edge_map(rgb: np.ndarray, spec: EdgeSpec, subject: np.ndarray | None = None) -> np.ndarray:
    """Boolean HxW edge pixels of an RGB uint8 image; with a boolean `subject`, only edges on the subject."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if spec.blur > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), spec.blur)
    low, high = spec.thresholds or auto_thresholds(gray, subject)
    edges = cv2.Canny(gray, low, high)
    if spec.thickness > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (spec.thickness, spec.thickness))
        edges = cv2.dilate(edges, kernel)
    found = edges > 0
    return found & subject if subject is not None else found


def render_edges(edges: np.ndarray, style: str) -> np.ndarray:
    """Boolean edges -> RGB uint8 drawing: black lines on white paper, or white lines on black."""
    line, paper = (0, 255) if style == "black-on-white" else (255, 0)
    gray = np.where(edges, line, paper).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def edge_image(rgb: np.ndarray, spec: EdgeSpec, subject: np.ndarray | None = None) -> np.ndarray:
    """The A side of an edges -> photo pair."""
    return render_edges(edge_map(rgb, spec, subject), spec.style)
