"""One spelling rule: every multi-word flag with dashes or underscores, --direction in both notations, recipe keys
in either form."""

from __future__ import annotations

import numpy as np
import pytest
import typer

from pairforge.cli import build_app
from pairforge.flags import canonical_argv, flag_key
from pairforge.recipes import click_command, load, to_argv
from tests.conftest import load as load_image
from tests.conftest import pattern, read_manifest, save

REFERENCE_SPELLING = {"train", "test", "translate"}
"""Commands whose flags keep the reference trainer's underscores; every other command spells them with dashes."""


def leaf_commands(group, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


ROOT = typer.main.get_command(build_app())
COMMANDS = list(leaf_commands(ROOT))


def swapped(flag: str) -> str:
    body = flag[2:]
    return "--" + (body.replace("_", "-") if "_" in body else body.replace("-", "_"))


@pytest.mark.parametrize(("words", "command"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_every_multi_word_flag_takes_both_spellings(words, command):
    flags = [o for p in command.params for o in (*p.opts, *getattr(p, "secondary_opts", [])) if o.startswith("--")]
    multi = [f for f in flags if "-" in f[2:] or "_" in f[2:]]
    separator = "_" if words[0] in REFERENCE_SPELLING else "-"
    for flag in multi:
        assert ("-" if separator == "_" else "_") not in flag[2:], f"{' '.join(words)} {flag}: help shows one form"
        for typed in (flag, swapped(flag), "--" + flag_key(flag)):
            assert canonical_argv(ROOT, [*words, typed, "x"]) == [*words, flag, "x"]
            assert canonical_argv(ROOT, [*words, f"{typed}=1"]) == [*words, f"{flag}=1"]


def test_rewriting_stops_at_double_dash_and_leaves_values_and_unknown_flags():
    argv = ["combine", "a", "b", "out", "--size_policy", "resize_b", "--no_such_flag", "--", "--a_suffix"]
    expected = ["combine", "a", "b", "out", "--size-policy", "resize_b", "--no_such_flag", "--", "--a_suffix"]
    assert canonical_argv(ROOT, argv) == expected


def test_combine_with_underscores_and_both_direction_notations(cli, tmp_path):
    save(tmp_path / "A" / "x_A.png", pattern(8, 8, seed=1))
    save(tmp_path / "B" / "x_B.png", pattern(8, 8, seed=2))
    left = {}
    for direction in ("AB", "AtoB", "BA", "btoa"):
        out = tmp_path / direction
        args = ("--a_suffix", "_A", "--b-suffix", "_B", "--size_policy", "error", "--split", "1,0,0", "-q")
        result = cli("combine", tmp_path / "A", tmp_path / "B", out, "--direction", direction, *args)
        assert result.code == 0, result.err
        left[direction] = load_image(out / "train" / "x.png")[:, :8]
        assert read_manifest(out)["options"]["direction"] == ("BA" if direction.lower().startswith("b") else "AB")
    assert np.array_equal(left["AB"], pattern(8, 8, seed=1)) and np.array_equal(left["AtoB"], left["AB"])
    assert np.array_equal(left["BA"], pattern(8, 8, seed=2)) and np.array_equal(left["btoa"], left["BA"])
    bad = cli("combine", tmp_path / "A", tmp_path / "B", tmp_path / "bad", "--direction", "sideways")
    assert bad.code == 2 and "AtoB (or AB)" in bad.err


@pytest.mark.parametrize("command", ["train", "test", "translate", "export"])
def test_direction_notations_on_trainer_commands(command):
    click = click_command([command])
    args = {"train": [], "test": ["run"], "translate": ["run", "in", "out"], "export": ["run", "out.onnx"]}[command]
    for typed, meant in (("AB", "AtoB"), ("BA", "BtoA"), ("AtoB", "AtoB"), ("BtoA", "BtoA")):
        context = click.make_context(command, [*args, "--direction", typed])
        assert context.params["direction"] == meant


def test_recipe_keys_take_both_spellings_and_overrides_meet(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'description = "spelling"\nruns-dir = "runs"\n'
        '[prep]\ncommand = "combine"\ninputs = ["a", "b"]\noutput = "ds"\nsize-policy = "resize-b"\n'
        '[train]\nbatch-size = 2\nno-flip = true\ndirection = "BA"\n'
        '[variants.small]\ntrain = { batch_size = 1 }\nprep = { size_policy = "pad" }\n'
    )
    loaded = load(recipe, "small", sets=["train.lambda-L1=50"])
    assert loaded.recipe.prep.options == {"size_policy": "pad"}
    assert loaded.recipe.train == {"batch_size": 1, "no_flip": True, "direction": "BA", "lambda_L1": 50}
    argv = to_argv(["train"], [], loaded.recipe.train, "r.toml")
    assert argv == ["train", "--batch_size", "1", "--no_flip", "--direction", "BA", "--lambda_L1", "50"]
    assert to_argv(["combine"], ["a", "b", "o"], {"size-policy": "pad"}, "r.toml")[-2:] == ["--size-policy", "pad"]
