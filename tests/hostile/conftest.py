"""Helpers of the hostile-input suite: a user's home around every output, hashed before and after; the one-line
error rule; every input accounted for in the manifest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import pattern, read_manifest

TINY = ["--netG", "unet_128", "--ngf", "4", "--ndf", "4", "--load_size", "128", "--crop_size", "128", "--device", "cpu"]


def tree(root: Path, *skip: Path) -> dict[str, str]:
    """Every entry under `root` (but those under `skip`): files by sha256, links by target, folders by mode."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if Path(folder, name) not in skip]
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if path in skip:
                continue
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = f"dir {path.stat().st_mode:o}"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def one_line(result, code: int) -> str:
    """The command exited `code` with exactly one line on stderr, an `error:` line without a traceback."""
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == code, result.err
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    return lines[0]


def accounted(out: Path, inputs: dict[str, Path]) -> dict:
    """Every file of every input folder is in the manifest's items or rejections; returns the manifest."""
    manifest = read_manifest(out)
    seen = {(role, rel) for item in manifest["items"] for role, rel in item["sources"].items()}
    seen |= {(role, rel) for record in manifest["rejected"] for role, rel in record["paths"].items()}
    for role, folder in inputs.items():
        names = {entry.name for entry in os.scandir(folder)}
        missing = [name for name in names if (role, name) not in seen]
        assert not missing, f"{role} inputs missing from the manifest: {missing}"
    return manifest


def write_pairs(a: Path, b: Path, names: list[str], size: int = 16) -> None:
    """A/<name>.png and B/<name>.png for each name, A and B different, each pair different from the others."""
    for i, name in enumerate(names):
        for folder, seed in ((a, 2 * i), (b, 2 * i + 1)):
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pattern(size, size, seed)).save(folder / f"{name}.png")


@pytest.fixture
def home(tmp_path):
    """A user's folder: notes and a thesis beside inputs A/ and B/ of five pairs."""
    (tmp_path / "notes.txt").write_text("do not lose me\n")
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("\\chapter{One}\n")
    write_pairs(tmp_path / "A", tmp_path / "B", [f"p{i}" for i in range(5)])
    return tmp_path


def ab_dataset(root: Path, count: int = 2, size: int = 128) -> Path:
    """A tiny `ab` dataset (train split) for the trainer."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        a = pattern(size, size, i)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(root / "train" / f"p{i}.png")
    return root
