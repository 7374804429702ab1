"""The wheel as a new user gets it: built from this checkout, installed with only its core dependencies into a
fresh virtual environment, and run from an empty folder (no source tree on the path, no torch)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import pattern, save

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*_cache", "demo-out", "runs", ".wheels")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the fresh environment's bin folder)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: setuptools leaves build/ in the tree it builds, and stale files in it
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp / "dist"), str(source)]
    subprocess.run(pip, check=True)
    wheel = next((tmp / "dist").glob("pairforge-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    subprocess.run([tmp / "venv/bin/pip", "install", "--quiet", "--disable-pip-version-check", wheel], check=True)
    return wheel, tmp / "venv" / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [str(bin_dir / args[0]), *args[1:]]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_wheel_holds_recipes_license_and_urls(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    recipes = {Path(n).name for n in names if n.startswith("pairforge/bundled_recipes/") and n.endswith(".toml")}
    assert recipes == {p.name for p in (ROOT / "recipes").glob("*.toml")}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "pairforge/__main__.py" in names
    assert "License-Expression: MIT" in metadata
    assert "Project-URL: Homepage" in metadata


def test_installed_commands_from_an_empty_folder(installed, tmp_path):
    _, bin_dir = installed
    work = tmp_path / "empty"
    work.mkdir()
    listed = _run(bin_dir, work, "pairforge", "recipes")
    assert listed.returncode == 0, listed.stderr
    for name in ("cityscapes", "demo", "facades"):
        assert name in listed.stdout
    version = _run(bin_dir, work, "python", "-m", "pairforge", "--version")
    assert version.returncode == 0 and version.stdout.startswith("pairforge ")

    for i in range(6):
        save(work / "in/A" / f"{i}.png", pattern(24, 16, seed=i))
        save(work / "in/B" / f"{i}.png", pattern(24, 16, seed=10 + i))
    combined = _run(bin_dir, work, "pairforge", "combine", "in/A", "in/B", "out", "--json")
    assert combined.returncode == 0, combined.stderr
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    assert len(manifest["items"]) == 6 and not manifest["rejected"]

    photos = work / "raw/cityscapes/leftImg8bit/train/aachen"
    labels = work / "raw/cityscapes/gtFine/train/aachen"
    save(photos / "aachen_000000_000019_leftImg8bit.png", pattern(64, 32))
    save(labels / "aachen_000000_000019_gtFine_color.png", np.zeros((32, 64, 3), np.uint8))
    plan = _run(bin_dir, work, "pairforge", "run", "cityscapes", "--dry-run", "--data-root", "raw")
    assert plan.returncode == 0, plan.stderr
    for stage in ("prep", "train", "test", "eval", "report"):
        assert stage in plan.stdout
    assert not (work / "datasets").exists() and not (work / "runs").exists()


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("pairforge", "train", "--dataroot", "out"), "train"),
        (("pairforge", "test", "somerun"), "train"),
        (("pairforge", "translate", "somerun", "in/A", "translated"), "train"),
        (("pairforge", "export", "somerun", "model.onnx"), "train"),
        (("pairforge", "report", "."), "train"),
        (("pairforge", "combine", "in/A", "in/B", "shards", "--layout", "ab,webdataset"), "webdataset"),
        (("pairforge", "rmbg", "in/A", "cutouts", "--bg", "rembg"), "celeba"),
        (("python", "-m", "pairforge.demo"), "demo"),
    ],
)
def test_missing_extra_is_one_line(installed, tmp_path, args, extra):
    _, bin_dir = installed
    for i in range(2):
        save(tmp_path / "in/A" / f"{i}.png", pattern(16, 16, seed=i))
        save(tmp_path / "in/B" / f"{i}.png", pattern(16, 16, seed=i + 5))
    result = _run(bin_dir, tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"pip install 'pairforge[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing written, not even a manifest
