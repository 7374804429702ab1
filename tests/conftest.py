"""Shared test helpers: writing images of every mode, and running the CLI in-process."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pairforge.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys):
    """Run `pairforge ARGS...` in this process; returns exit code, stdout and stderr."""

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def pattern(width: int, height: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A deterministic, non-trivial uint8 image (gradients plus noise), different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)), (xx + yy) % 256], -1)
    noise = rng.integers(0, 40, size=(height, width, 3))
    img = ((base + noise + seed * 17) % 256).astype(np.uint8)
    return img[:, :, :channels] if channels < 3 else img


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = kwargs.pop("mode", None)
    Image.fromarray(array, mode=mode).save(path, **kwargs) if mode else Image.fromarray(array).save(path, **kwargs)
    return path


def load(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def truncated_png(path: Path, width: int = 32, height: int = 32) -> Path:
    buf = io.BytesIO()
    Image.fromarray(pattern(width, height)).save(buf, "PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def read_manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A tar.gz of `members` (name -> bytes) and symbolic `links` (name -> target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def same_files(root_or_manifest: Path | dict) -> list[dict]:
    """A manifest's items without the files' modification times: what two builds of the same dataset share."""
    manifest = root_or_manifest if isinstance(root_or_manifest, dict) else read_manifest(root_or_manifest)
    return [
        {**item, "outputs": [{k: v for k, v in o.items() if k != "mtime_ns"} for o in item["outputs"]]}
        for item in manifest["items"]
    ]
