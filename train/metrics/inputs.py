"""What `pairforge eval` scores: the test outputs of a run (found through its files and the dataset's manifest)
or two folders of images paired by file stem.

A run's `test` writes `results/<phase>_<epoch>/images/<key>_fake_B.png` (output) and `<key>_real_B.png`
(target) with a metrics.json that names the dataset; the dataset's manifest.json records, per key, the source
files it was made from, so the Cityscapes gtFine labelIds of each output are found without extra flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pairforge.errors import UsageError
from pairforge.manifest_lines import MANIFEST_NAME, ManifestLines
from pairforge.train.data import list_images

LABEL_SUFFIXES = ("_gtFine_color.png", "_gtFine_labelIds.png", "_gtFine_trainIds.png")
LABEL_IDS = "_gtFine_labelIds.png"


@dataclass(frozen=True)
class Sample:
    key: str
    fake: Path
    real: Path | None
    label: Path | None = None


@dataclass(frozen=True)
class EvalInputs:
    samples: list[Sample]
    source: dict
    """Where the samples came from (recorded in metrics.json)."""
    run: Path | None = None


def from_run(run: Path, results: str | None = None) -> EvalInputs:
    """The outputs of `pairforge test` in `run` (the newest results folder, or `results`)."""
    folder = _results_folder(run, results)
    test = json.loads((folder / "metrics.json").read_text())
    if "l1" not in test:
        raise UsageError(f"{folder}: not a paired (pix2pix) test result; use --fake DIR --real DIR")
    files = {p.stem: p for p in (folder / "images").iterdir()}  # by stem: test may write .png, .tif or .npy
    samples = []
    for row in test["images"]:
        key = row["key"]
        if f"{key}_fake_B" not in files or f"{key}_real_B" not in files:
            raise UsageError(f"{folder}/images: no {key}_fake_B / {key}_real_B image; run `pairforge test` again")
        samples.append(Sample(key, files[f"{key}_fake_B"], files[f"{key}_real_B"]))
    labels = _manifest_labels(Path(test["dataroot"])) if test.get("dataroot") else {}
    samples = [Sample(s.key, s.fake, s.real, labels.get(s.key)) for s in samples]
    source = {"run": str(run), "results": str(folder), "dataroot": test.get("dataroot"), "phase": test.get("phase")}
    return EvalInputs(samples, source, run)


def _results_folder(run: Path, results: str | None) -> Path:
    if not (run / "results").is_dir():
        raise UsageError(f"{run}: no results/ folder; run `pairforge test {run}` first (or give --fake and --real)")
    if results is not None:
        folder = run / "results" / results
        if not (folder / "metrics.json").is_file():
            raise UsageError(f"--results {results}: no test results at {folder}")
        return folder
    found = [p.parent for p in (run / "results").glob("*/metrics.json") if (p.parent / "images").is_dir()]
    if not found:
        raise UsageError(f"{run}: no test results under results/; run `pairforge test {run}` first")
    return max(found, key=lambda p: (p / "metrics.json").stat().st_mtime)


def _manifest_labels(dataroot: Path) -> dict[str, Path]:
    """key -> gtFine labelIds file, from a dataset made by `pairforge prep cityscapes` ({} for other datasets); the
    manifest's items are read one at a time."""
    path = dataroot / MANIFEST_NAME
    if not path.is_file():
        return {}
    manifest = ManifestLines(path)
    root = manifest.header.get("sources", {}).get("label")
    if root is None:
        return {}
    labels = {}
    for item in manifest.records("items"):
        rel = item.get("sources", {}).get("label", "")
        for suffix in LABEL_SUFFIXES:
            if rel.endswith(suffix):
                labels[item["key"]] = Path(root) / (rel.removesuffix(suffix) + LABEL_IDS)
    return labels


def from_folders(fake: Path, real: Path | None, labels: Path | None = None) -> EvalInputs:
    """Images of `fake` paired by stem with those of `real` (when given) and with `labels` (`<stem>.png` or
    `<stem>_gtFine_labelIds.png`). With `real`, every fake image needs its real one."""
    fakes = _images(fake, "--fake")
    reals = _images(real, "--real") if real is not None else {}
    label_files = {}
    if labels is not None:
        label_files = {
            k.removesuffix(LABEL_IDS.removesuffix(".png")): p for k, p in _images(labels, "--labels").items()
        }
    if real is not None:
        missing = sorted(set(fakes) - set(reals))
        if missing:
            raise UsageError(f"--real {real}: no image named {missing[0]!r} (of {len(missing)} fake images unmatched)")
    samples = [Sample(k, p, reals.get(k), label_files.get(k)) for k, p in fakes.items()]
    source = {"fake": str(fake), "real": None if real is None else str(real), "labels": labels and str(labels)}
    return EvalInputs(samples, source)


def _images(folder: Path, flag: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise UsageError(f"{flag} {folder}: folder not found")
    images = list_images(folder)
    if not images:
        raise UsageError(f"{flag} {folder}: no images")
    return images
