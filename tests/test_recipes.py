"""Recipes: validation errors are one line with exit 2; bundled recipes validate and dry-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pairforge.recipes import RECIPES_DIR, parse_toml

BUNDLED = sorted(RECIPES_DIR.glob("*.toml"))


def make_raw_folders(recipe: Path, data_root: Path) -> None:
    """Create the (empty) raw input folders a recipe names, so that validation can pass."""
    prep = parse_toml(recipe).get("prep", {})
    if prep.get("command") == "fetch":
        return
    for folder in prep.get("inputs", []):
        Path(folder.replace("${data_root}", str(data_root))).mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("recipe", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_bundled_recipe_validates_and_dry_runs(recipe, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_raw_folders(recipe, tmp_path / "raw")
    variants = [None, *parse_toml(recipe).get("variants", {})]
    for variant in variants:
        args = ["run", recipe, "--data-root", tmp_path / "raw", "--dry-run"]
        result = cli(*args, *(["--variant", variant] if variant else []))
        assert result.code == 0, result.err
        assert "pairforge train" in result.out
    assert not (tmp_path / "runs").exists()


def write_recipe(tmp_path: Path, body: str) -> Path:
    (tmp_path / "raw" / "A").mkdir(parents=True, exist_ok=True)
    (tmp_path / "raw" / "B").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "mine.toml"
    path.write_text(
        'description = "test"\n[prep]\ncommand = "combine"\ninputs = ["${data_root}/A", "${data_root}/B"]\n'
        'output = "ds"\n' + body
    )
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[train]\nbatchsize = 4\n", "unknown key 'batchsize' for pairforge train (did you mean 'batch_size'?)"),
        ("[train]\nbatch_size = 'four'\n", "Invalid value for '--batch_size'"),
        ("[train]\nno_flip = 3\n", "key 'no_flip' takes true or false"),
        ("[prep]\nsize = 3\n", "TOML syntax error"),
        ("[trian]\nbatch_size = 4\n", "key trian: unknown key"),
        ("[train]\nmodel = 'cycle_gan'\n", "cycle_gan needs an unaligned dataset"),
    ],
    ids=["unknown-key", "wrong-type", "flag-type", "toml-syntax", "unknown-table", "impossible"],
)
def test_recipe_errors_are_one_line_with_exit_2(tmp_path, cli, body, message):
    recipe = write_recipe(tmp_path, body)
    result = cli("run", recipe, "--data-root", tmp_path / "raw", "--dry-run")
    assert result.code == 2, result.out
    assert message in result.err and str(recipe) in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


def test_toml_syntax_error_shows_the_line(tmp_path, cli):
    recipe = tmp_path / "bad.toml"
    recipe.write_text('description = "x"\n[train]\nbatch_size = \n')
    result = cli("run", recipe, "--dry-run")
    assert result.code == 2 and "line 3" in result.err


def test_missing_raw_data_and_unset_data_root(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("PAIRFORGE_DATA", raising=False)
    recipe = write_recipe(tmp_path, "")
    result = cli("run", recipe, "--dry-run")
    assert result.code == 2 and "${data_root} is not set (pass --data-root or set PAIRFORGE_DATA)" in result.err
    result = cli("run", recipe, "--data-root", tmp_path / "elsewhere", "--dry-run")
    assert result.code == 2 and "key prep.inputs" in result.err and "elsewhere/A does not exist" in result.err


def test_set_overrides_and_variants_reach_the_commands(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(
        tmp_path, "[train]\nbatch_size = 2\n[variants.big]\ntrain = { batch_size = 8, no_flip = true }\n"
    )
    plain = cli("run", recipe, "--data-root", tmp_path / "raw", "--dry-run", "--set", "train.lr=0.001")
    assert plain.code == 0, plain.err
    flat = " ".join(plain.out.split())
    assert "--batch_size 2" in flat and "--lr 0.001" in flat and "--name mine" in flat
    big = cli("run", recipe, "--data-root", tmp_path / "raw", "--dry-run", "--variant", "big")
    flat = " ".join(big.out.split())
    assert "--batch_size 8" in flat and "--no_flip" in flat and "--name mine_big" in flat
    missing = cli("run", recipe, "--data-root", tmp_path / "raw", "--variant", "huge")
    assert missing.code == 2 and "no variant 'huge'; variants: big" in missing.err
