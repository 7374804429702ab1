"""Background removal: a rembg model (one onnxruntime session per process), OpenCV GrabCut, and compositing.

rembg models are files and are never downloaded here. `--bg-model` is a path to an `.onnx` file, or the name of a
rembg model (`u2net`, `u2net_human_seg`, `isnet-general-use`, ...) already in rembg's model folder (`$U2NET_HOME`,
by default `~/.u2net`). The file is loaded through rembg's own custom-model sessions (`u2net_custom` for the U2-Net
family, `dis_custom` for IS-Net), which is the code path rembg runs for its named models too.

A mask is HxW uint8 alpha: 255 subject, 0 background, values between on soft edges.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pairforge.errors import UsageError
from pairforge.prep.imageio import ImageRejected

BG_METHODS = ("rembg", "grabcut", "none")
BG_DEVICES = ("cpu", "cuda")
FILL_NAMES = {"white": (255, 255, 255), "black": (0, 0, 0)}
# rembg session name and square input side of each supported model family.
FAMILIES = {"u2net": ("u2net_custom", 320), "isnet": ("dis_custom", 1024)}
UNSUPPORTED_PREFIXES = ("birefnet", "bria", "ben2", "sam", "vitmatte")
GRABCUT_ITERATIONS = 5
# `--grabcut-rect portrait`: the seeds of an aligned portrait (see `portrait_seeds`), in fractions of the image.
PORTRAIT = "portrait"
PORTRAIT_SIDE = 0.15  # width of the side strips that start as probable background
PORTRAIT_SHOULDERS = 0.75  # ... down to where the shoulders start
PORTRAIT_CORNER = 0.3  # top corners with u + v below this are background
PORTRAIT_ITERATIONS = 2  # more iterations let hair that resembles the background erode away

RGB = tuple[int, int, int]
Rect = tuple[float, float, float, float]


def parse_fill(text: str, flag: str = "--bg-fill") -> RGB:
    """`white`, `black` or `#RRGGBB` -> (r, g, b)."""
    value = text.strip().lower()
    if value in FILL_NAMES:
        return FILL_NAMES[value]
    digits = value.removeprefix("#")
    if len(digits) == 6 and all(c in "0123456789abcdef" for c in digits):
        r, g, b = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
        return r, g, b
    raise UsageError(f"{flag} {text!r}: expected white, black or #RRGGBB")


def parse_rect(text: str, flag: str = "--grabcut-rect") -> Rect:
    """`L,T,R,B` as fractions of the width and height, with L < R and T < B."""
    parts = text.split(",")
    try:
        left, top, right, bottom = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected four fractions L,T,R,B, e.g. 0.1,0.05,0.9,1") from None
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise UsageError(f"{flag} {text!r}: need 0 <= L < R <= 1 and 0 <= T < B <= 1")
    return left, top, right, bottom


def composite(rgb: np.ndarray, alpha: np.ndarray, fill: RGB) -> np.ndarray:
    """Blend the subject over a plain `fill` colour: alpha 255 keeps a pixel, 0 replaces it by the fill."""
    weight = alpha.astype(np.float32)[:, :, None] / 255.0
    blended = rgb.astype(np.float32) * weight + np.asarray(fill, np.float32) * (1.0 - weight)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def parse_grabcut(text: str, flag: str = "--grabcut-rect") -> Rect | None:
    """`portrait` -> None (GrabCut seeded for an aligned portrait), else a rectangle `L,T,R,B` (`parse_rect`)."""
    return None if text.strip().lower() == PORTRAIT else parse_rect(text, flag)


def portrait_seeds(height: int, width: int) -> np.ndarray:
    """GrabCut's starting labels for an aligned head-and-shoulders portrait (CelebA's alignment: the face centred
    a little below the middle, hair up to the top, shoulders reaching the sides and the bottom), in fractions, so
    they fit CelebA's 178x218 frame and its centre crops alike.

    Definite subject: the inner face, the forehead and crown above it, and the chest under the chin. Definite
    background: the two top corners. Probable background: strips along the sides above the shoulders, where the
    background beside the head is. Everything else is probably subject, so nothing of the person is forced out."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = u / width, v / height
    seeds = np.full((height, width), cv2.GC_PR_FGD, np.uint8)
    seeds[(np.abs(u - 0.5) > 0.5 - PORTRAIT_SIDE) & (v < PORTRAIT_SHOULDERS)] = cv2.GC_PR_BGD
    seeds[np.minimum(u, 1 - u) + v < PORTRAIT_CORNER] = cv2.GC_BGD
    face = ((u - 0.5) / 0.14) ** 2 + ((v - 0.58) / 0.14) ** 2 <= 1
    crown = ((u - 0.5) / 0.15) ** 2 + ((v - 0.45) / 0.2) ** 2 <= 1
    chest = (np.abs(u - 0.5) < 0.1) & (v >= 0.92)
    seeds[face | crown | chest] = cv2.GC_FGD
    return seeds


def grabcut_mask(rgb: np.ndarray, rect: Rect | None) -> np.ndarray:
    """GrabCut from a rectangle given in fractions (outside it is background, inside it probably subject), or,
    with `rect` None, from `portrait_seeds`.

    The random state is re-seeded for every image, so the same input always gives the same mask."""
    height, width = rgb.shape[:2]
    if rect is None:
        mask, box, mode, iterations = portrait_seeds(height, width), None, cv2.GC_INIT_WITH_MASK, PORTRAIT_ITERATIONS
    else:
        x0, y0 = round(rect[0] * width), round(rect[1] * height)
        x1, y1 = round(rect[2] * width), round(rect[3] * height)
        if x1 - x0 < 2 or y1 - y0 < 2 or (x0, y0, x1, y1) == (0, 0, width, height):
            raise ImageRejected(f"grabcut rectangle does not fit a {width}x{height} image", "grabcut failed")
        mask, box, mode = np.zeros((height, width), np.uint8), (x0, y0, x1 - x0, y1 - y0), cv2.GC_INIT_WITH_RECT
        iterations = GRABCUT_ITERATIONS
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    try:
        cv2.grabCut(bgr, mask, box, *models, iterations, mode)
    except cv2.error as exc:
        raise ImageRejected(f"grabcut failed: {exc.err}", "grabcut failed") from None
    subject = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return np.where(subject, 255, 0).astype(np.uint8)


@dataclass(frozen=True)
class RembgModel:
    """A model file and how to run it; picklable, so worker processes open their own session from it."""

    path: str
    family: str = "u2net"
    device: str = "cpu"
    threads: int = 0  # onnxruntime intra-op threads (0 = onnxruntime's default)

    @property
    def providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda" else ["CPUExecutionProvider"]


_SESSIONS: dict[RembgModel, object] = {}


def model_family(path: Path) -> str:
    """The model family from the file name: `isnet*` -> isnet, known other architectures refused, else u2net."""
    stem = path.stem.lower()
    if stem.startswith("isnet"):
        return "isnet"
    if stem.startswith(UNSUPPORTED_PREFIXES):
        raise UsageError(
            f"--bg-model {path.name}: this architecture is not supported; use a U2-Net (u2net, u2netp, "
            "u2net_human_seg, silueta) or IS-Net (isnet-general-use, isnet-anime) model file"
        )
    return "u2net"


def resolve_model(value: str) -> Path:
    """`--bg-model`: an existing file, or a rembg model name found in rembg's model folder. Never downloads."""
    path = Path(value).expanduser()
    if path.is_file():
        return path.resolve()
    if path.suffix or os.sep in value:
        raise UsageError(f"--bg-model {value}: no such model file (nothing is downloaded; give the path of an .onnx)")
    from rembg.sessions import sessions

    if value not in sessions:
        raise UsageError(f"--bg-model {value}: neither a model file nor a rembg model name (e.g. u2net)")
    found = sessions[value].resolve_existing(f"{value}.onnx")
    if found is None:
        folders = f"{sessions[value].model_dir()} or {sessions[value].legacy_home()}"
        raise UsageError(
            f"--bg-model {value}: no {value}.onnx in rembg's model folder ({folders}); "
            "give --bg-model PATH to a model file (nothing is downloaded), or use --bg grabcut"
        )
    return Path(found).resolve()


def check_device(device: str) -> None:
    if device not in BG_DEVICES:
        raise UsageError(f"--bg-device {device!r}: choose from {', '.join(BG_DEVICES)}")
    if device == "cuda":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise UsageError(
                "--bg-device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu), "
                "or use --bg-device cpu"
            )


def open_model(value: str, device: str = "cpu", threads: int = 0) -> RembgModel:
    """Resolve and load `--bg-model` once in this process, so a bad model or device is one clear error."""
    check_device(device)
    path = resolve_model(value)
    family = model_family(path)
    model = RembgModel(str(path), family, device, threads)
    try:
        session = rembg_session(model)
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--bg-model {path}: cannot load it as an ONNX model ({detail})") from None
    side = FAMILIES[family][1]
    shape = session.inner_session.get_inputs()[0].shape
    if len(shape) != 4 or any(isinstance(d, int) and d != side for d in shape[2:]):
        raise UsageError(f"--bg-model {path.name}: a {family} model takes 1x3x{side}x{side} input, this one {shape}")
    if device == "cuda" and "CUDAExecutionProvider" not in session.inner_session.get_providers():
        raise UsageError("--bg-device cuda: onnxruntime could not start CUDA (check the CUDA/cuDNN libraries)")
    return model


@contextmanager
def _model_folder(folder: Path):
    """rembg only opens custom models inside its model folder (`U2NET_HOME`): point it at the model's folder."""
    previous = os.environ.get("U2NET_HOME")
    os.environ["U2NET_HOME"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("U2NET_HOME", None)
        else:
            os.environ["U2NET_HOME"] = previous


def rembg_session(model: RembgModel):
    """This process's rembg session for `model`: created on first use, then reused for every image."""
    session = _SESSIONS.get(model)
    if session is None:
        import onnxruntime
        from rembg import new_session

        options = onnxruntime.SessionOptions()
        if model.threads:
            options.intra_op_num_threads = model.threads
            options.inter_op_num_threads = 1
        with _model_folder(Path(model.path).parent):
            session = new_session(
                FAMILIES[model.family][0], sess_opts=options, providers=model.providers, model_path=model.path
            )
        _SESSIONS[model] = session
    return session


def close_model(model: RembgModel) -> None:
    """Drop this process's session for `model` (e.g. in a parent whose workers open their own)."""
    _SESSIONS.pop(model, None)


def rembg_cutout(rgb: np.ndarray, model: RembgModel, alpha_matting: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(subject colours, alpha) from rembg. With alpha matting, rembg also estimates the subject's colours on
    soft edges; otherwise the colours are the input's."""
    from rembg import remove

    session = rembg_session(model)
    if alpha_matting:
        rgba = np.asarray(remove(rgb, session=session, alpha_matting=True))
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    return rgb, np.asarray(remove(rgb, session=session, only_mask=True))


@dataclass(frozen=True)
class Remover:
    """`--bg`: what separates the subject from its background. Calling it gives (colours, alpha or None)."""

    method: str = "none"
    model: RembgModel | None = None
    alpha_matting: bool = False
    rect: Rect | None = (0.05, 0.05, 0.95, 0.95)  # None: GrabCut seeded for an aligned portrait

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.method == "rembg":
            return rembg_cutout(rgb, self.model, self.alpha_matting)
        if self.method == "grabcut":
            return rgb, grabcut_mask(rgb, self.rect)
        return rgb, None
