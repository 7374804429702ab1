"""Optional dependencies: a command that needs a missing one stops with one line naming the pip extra (exit 2)
before it does any work, e.g. `pairforge train needs torch: pip install 'pairforge[train]'`."""

from __future__ import annotations

import importlib.util

from pairforge.errors import UsageError

EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "torchvision", "safetensors", "skimage", "tifffile", "matplotlib"),
    "demo": ("torch", "torchvision", "safetensors", "skimage", "matplotlib"),
    "eval": ("torch", "torch_fidelity", "lpips", "onnxruntime"),
    "export": ("onnx", "onnxruntime"),
    "celeba": ("rembg", "onnxruntime"),
    "cityscapes": ("cityscapesscripts",),
    "nyu": ("h5py", "scipy"),
    "coco": ("pycocotools",),
    "ray": ("ray",),
    "webdataset": ("webdataset", "braceexpand"),
    "tensorboard": ("tensorboard",),
    "wandb": ("wandb",),
}
"""The modules (import names) that each extra of pyproject.toml installs; tests keep the two in step."""


class MissingExtra(UsageError):
    """An optional dependency is not installed (exit code 2)."""


def install_hint(extra: str) -> str:
    return f"pip install 'pairforge[{extra}]'"


def require(extra: str, purpose: str, modules: tuple[str, ...] | None = None) -> None:
    """Stop unless `modules` (default: every module of `extra`) can be imported. Nothing is imported here."""
    for module in EXTRAS[extra] if modules is None else modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(f"{purpose} needs {module}: {install_hint(extra)}")


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The one-line error for an import of an optional module that failed anyway (a path `require` missed)."""
    module = (exc.name or "").partition(".")[0]
    extra = next((name for name, modules in EXTRAS.items() if module in modules), None)
    return MissingExtra(f"{module} is not installed: {install_hint(extra)}") if extra else None
