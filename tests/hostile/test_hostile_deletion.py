"""pairforge deletes only what its own record says it wrote, inside the output it was given (issue 23, 1-3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pairforge.train.runlog import TRAINING_ENTRIES
from tests.conftest import tar_gz
from tests.hostile.conftest import TINY, ab_dataset, accounted, one_line, tree


@pytest.mark.parametrize("name", ["..", ".", "../escaped", "/absolute", "a/b", "  "])
def test_run_names_outside_the_runs_folder_are_refused(home, cli, name):
    data = ab_dataset(home / "data")
    runs = home / "work" / "runs"
    (runs / "other").mkdir(parents=True)
    (runs / "other" / "config.json").write_text("{}")
    name = str(home / "victim") if name == "/absolute" else name
    before = tree(home)
    result = cli("train", "--dataroot", data, "--runs_dir", runs, "--name", name, "--overwrite", *TINY)
    assert "run name" in one_line(result, 2)
    assert tree(home) == before


def user_folder_as_run(runs: Path) -> Path:
    folder = runs / "thesis"
    folder.mkdir(parents=True)
    (folder / "chapter1.tex").write_text("\\chapter{One}\n")
    (folder / "results").mkdir()
    (folder / "results" / "table.csv").write_text("a,b\n")
    return folder


@pytest.mark.parametrize("overwrite", [True, False])
def test_a_folder_that_is_not_a_run_is_never_touched(home, cli, overwrite):
    data = ab_dataset(home / "data")
    user_folder_as_run(home / "runs")
    before = tree(home)
    flags = ["--overwrite"] if overwrite else []
    result = cli("train", "--dataroot", data, "--runs_dir", home / "runs", "--name", "thesis", *flags, *TINY)
    assert "not a pairforge run" in one_line(result, 2)
    assert tree(home) == before


def fake_run(folder: Path) -> None:
    """A run folder as training leaves it, plus a user's file and the recipe runner's records."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "epoch_009.safetensors").write_bytes(b"old")
    (folder / "samples").mkdir()
    (folder / "samples" / "step_0000400.png").write_bytes(b"old")
    (folder / "config.json").write_text("{}")
    (folder / "log.jsonl").write_text("{}\n")
    (folder / "stages").mkdir()
    (folder / "stages" / "prep.json").write_text("{}")
    (folder / "my_notes.txt").write_text("mine\n")


def test_overwrite_deletes_only_what_training_wrote(home, cli):
    data = ab_dataset(home / "data")
    run = home / "runs" / "r"
    fake_run(run)
    outside = tree(home, run)
    result = cli("train", "--dataroot", data, "--runs_dir", home / "runs", "--name", "r", "--overwrite", *TINY,
                 "--max_steps", "1", "-q")  # fmt: skip
    assert result.code == 0, result.err
    assert (run / "my_notes.txt").read_text() == "mine\n"
    assert (run / "stages" / "prep.json").is_file()
    assert not (run / "checkpoints" / "epoch_009.safetensors").exists()
    assert not (run / "samples" / "step_0000400.png").exists()
    assert (run / "checkpoints" / "latest.safetensors").is_file()
    assert json.loads((run / "config.json").read_text())["name"] == "r"
    assert len((run / "log.jsonl").read_text().splitlines()) >= 2  # a new log, not the old line appended to
    assert tree(home, run) == outside


def test_overwrite_with_a_read_only_sub_folder_deletes_nothing(home, cli, monkeypatch):
    data = ab_dataset(home / "data")
    run = home / "runs" / "r"
    fake_run(run)
    samples = run / "samples"
    if os.geteuid() == 0:  # root ignores permissions: the access check is told the folder is read-only
        real_access = os.access
        monkeypatch.setattr("pairforge.safety.os.access", lambda p, m: Path(p) != samples and real_access(p, m))
    else:
        samples.chmod(0o555)
    before = tree(home)
    try:
        result = cli("train", "--dataroot", data, "--runs_dir", home / "runs", "--name", "r", "--overwrite", *TINY)
    finally:
        samples.chmod(0o755)
    assert "read-only; nothing was deleted" in one_line(result, 1)
    assert tree(home) == before


def test_training_entries_cover_what_runs_write():
    assert {"config.json", "checkpoints", "log.jsonl", "samples", "results"} <= set(TRAINING_ENTRIES)
    assert "stages" not in TRAINING_ENTRIES and "recipe.toml" not in TRAINING_ENTRIES


@pytest.mark.parametrize("overwrite", [True, False])
def test_inputs_inside_the_output_are_refused(home, cli, overwrite):
    data = home / "data"
    data.mkdir()
    for side in "AB":
        (home / side).rename(data / side)
    before = tree(home)
    result = cli("combine", data / "A", data / "B", data, *(["--overwrite"] if overwrite else []))
    assert "is inside the output" in one_line(result, 2)
    assert tree(home) == before


def test_an_output_inside_an_input_is_refused(home, cli):
    before = tree(home)
    result = cli("combine", home / "A", home / "B", home / "A" / "out")
    assert "is inside the A input" in one_line(result, 2)
    assert tree(home) == before


@pytest.mark.parametrize("overwrite", [True, False])
def test_a_folder_without_manifest_is_refused_without_suggesting_to_delete_it(home, cli, overwrite):
    before = tree(home)
    result = cli("combine", home / "A", home / "B", home / "thesis", *(["--overwrite"] if overwrite else []))
    line = one_line(result, 2)
    assert "no manifest.json" in line and "overwrite" not in line and "delete" not in line
    assert tree(home) == before


def test_overwrite_of_a_dataset_keeps_its_unknown_files_and_removes_only_its_stale_outputs(home, cli):
    out = home / "out"
    assert cli("combine", home / "A", home / "B", out, "--workers", "1", "-q").code == 0
    (out / "train" / "mine.txt").write_text("mine\n")
    (home / "A" / "p0.png").unlink()
    result = cli("combine", home / "A", home / "B", out, "--workers", "1", "--overwrite", "-q")
    assert result.code == 0, result.err
    assert (out / "train" / "mine.txt").read_text() == "mine\n"
    manifest = accounted(out, {"A": home / "A", "B": home / "B"})
    outputs = {o["path"] for item in manifest["items"] for o in item["outputs"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert on_disk == outputs and not any("p0" in path for path in outputs)


def test_a_tampered_manifest_cannot_make_overwrite_delete_outside_the_output(home, cli):
    out = home / "out"
    assert cli("combine", home / "A", home / "B", out, "--workers", "1", "-q").code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["items"][0]["outputs"][0]["path"] = "../notes.txt"
    (out / "manifest.json").write_text(json.dumps(manifest))
    outside = tree(home, out)
    result = cli("combine", home / "A", home / "B", out, "--workers", "1", "--overwrite", "-q")
    assert "outside the folder; nothing was deleted" in one_line(result, 1)
    assert tree(home, out) == outside


def test_a_recipe_with_overwrite_cannot_empty_a_users_folder(home, cli):
    recipe = home / "r.toml"
    recipe.write_text(
        f'description = "d"\nruns_dir = "{home / "runs"}"\n[prep]\ncommand = "combine"\n'
        f'inputs = ["{home / "A"}", "{home / "B"}"]\noutput = "{home / "thesis"}"\noverwrite = true\n'
        f'[train]\nnetG = "unet_128"\n'
    )
    before = tree(home, home / "runs")
    result = cli("run", recipe, "--until", "prep")
    assert result.code != 0 and "no manifest.json" in result.err
    assert tree(home, home / "runs") == before


def test_a_recipe_name_outside_the_runs_folder_is_refused(home, cli):
    recipe = home / "r.toml"
    recipe.write_text('description = "d"\nname = ".."\n[train]\ndataroot = "data"\n')
    before = tree(home)
    assert "run name" in one_line(cli("run", recipe), 2)
    assert tree(home) == before


@pytest.fixture
def archive(home, monkeypatch):
    """A facades-like tar.gz served from a file:// URL (the registry kept under the test folder)."""
    monkeypatch.setenv("PAIRFORGE_HOME", str(home / ".cache"))
    images = {f"facades/{split}/{i}.png": (home / "A" / f"p{i}.png").read_bytes() for split in ("train", "test")
              for i in range(2)}  # fmt: skip
    path = home / "facades.tar.gz"
    path.write_bytes(tar_gz(images))
    return path.as_uri()


@pytest.mark.parametrize("overwrite", [True, False])
def test_fetch_never_writes_into_a_folder_it_did_not_write(home, cli, archive, overwrite):
    before = tree(home, home / ".cache")
    result = cli("fetch", "facades", home / "thesis", "--url", archive, "-q", *(["--overwrite"] if overwrite else []))
    line = one_line(result, 2)
    assert "no manifest.json" in line and "delete" not in line
    assert tree(home, home / ".cache") == before


def test_fetch_into_the_working_directory_is_one_line(home, cli, archive, monkeypatch):
    monkeypatch.chdir(home)
    before = tree(home, home / ".cache")
    assert "no manifest.json" in one_line(cli("fetch", "facades", ".", "--url", archive, "-q"), 2)
    assert tree(home, home / ".cache") == before


def test_fetch_overwrite_replaces_only_its_own_files(home, cli, archive):
    out = home / "facades"
    killed = home / f".facades.extracting-{2**22 + 12345}"  # a killed fetch's scratch folder (no such process)
    (killed / "train").mkdir(parents=True)
    (home / ".facades.extracting-mine").mkdir()  # not a pid: not pairforge's
    assert cli("fetch", "facades", out, "--url", archive, "-q").code == 0
    assert not killed.exists() and (home / ".facades.extracting-mine").is_dir()
    (home / ".facades.extracting-mine").rmdir()
    (out / "train" / "mine.txt").write_text("mine\n")
    before = tree(home, home / ".cache")
    line = one_line(cli("fetch", "facades", out, "--url", archive, "--overwrite", "-q"), 2)
    assert "files pairforge did not write (train/mine.txt)" in line
    assert tree(home, home / ".cache") == before
    (out / "train" / "mine.txt").unlink()
    assert cli("fetch", "facades", out, "--url", archive, "--overwrite", "-q").code == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "test/0.png", "test/1.png", "train/0.png", "train/1.png"]  # fmt: skip
    assert not list(home.glob(".facades.*"))  # no scratch folder left behind
