"""Recipes: TOML files (data, never code) that describe a dataset's whole pipeline.

A recipe's stage tables hold the options of the CLI command that runs the stage, under the flag's own name
(`size = 256` -> `--size 256`, `batch_size = 16` -> `--batch_size 16`, `no_flip = true` -> `--no_flip`).
Keys and types are checked against the commands themselves (their Click parameters), so a recipe can never
accept an option that the command would refuse, and no second schema can drift from the CLI.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, ConfigDict, ValidationError
from typer.core import TyperOption

from pairforge.errors import UsageError
from pairforge.flags import flag_key
from pairforge.safety import run_name

STAGES = ("prep", "train", "test", "eval", "report")
RECIPES_DIR = Path(str(resources.files("pairforge.bundled_recipes")))
"""The bundled recipes: the top-level `recipes/` folder, installed as the package `pairforge.bundled_recipes`
(so `pairforge run NAME` finds them from a wheel as from a checkout)."""


def recipe_path(recipe: Path) -> Path:
    """A recipe file as given, or a bundled recipe's name (`demo`, `cityscapes`)."""
    return recipe if recipe.suffix == ".toml" or recipe.exists() else RECIPES_DIR / f"{recipe}.toml"


class PrepStage(BaseModel):
    """`command` (e.g. `prep cityscapes`, `combine`, `fetch`), positional `inputs`, `output`, then options."""

    model_config = ConfigDict(extra="allow")
    command: str
    inputs: list[str] = []
    output: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str
    name: str | None = None
    runs_dir: str = "runs"
    prep: PrepStage | None = None
    train: dict[str, Any] = {}
    test: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    variants: dict[str, dict[str, dict[str, Any]]] = {}


@dataclass
class Loaded:
    """A recipe after variant, overrides and path expansion: what the runner executes."""

    path: Path
    name: str
    recipe: Recipe


def parse_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such recipe (see pairforge recipes)") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder; give a recipe file (.toml)") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start}); save the recipe as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: TOML syntax error: {exc}") from None


def load(
    path: Path, variant: str | None = None, sets: list[str] = (), data_root: Path | None = None, tag: str = ""
) -> Loaded:
    """Read, apply a variant and `--set` overrides, expand paths, validate. Every problem is one UsageError.
    The run is named `<recipe>[_<variant>][_<tag>]` (a sweep point's tag, e.g. `lr7e-5`)."""
    raw = _spelled(parse_toml(path))
    variants = raw.get("variants", {})
    if variant is not None:
        if variant not in variants:
            raise UsageError(f"{path}: no variant {variant!r}; variants: {', '.join(variants) or 'none'}")
        for stage, values in variants[variant].items():
            raw.setdefault(stage, {}).update(values)
    for assignment in sets:
        _apply_set(raw, assignment, path)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        hint = "unknown key: remove it or check its spelling" if error["type"] == "extra_forbidden" else error["msg"]
        raise UsageError(f"{path}: key {where}: {hint}") from None
    name = (recipe.name or path.stem) + (f"_{variant}" if variant else "") + (f"_{tag}" if tag else "")
    run_name(name, f"{path}: key name")
    loaded = Loaded(path, name, _expanded(recipe, path, data_root))
    return loaded


def _apply_set(raw: dict, assignment: str, path: Path) -> None:
    """`train.batch_size=16`: the value is read as TOML (numbers, booleans, strings, lists), else as text."""
    key, sep, text = assignment.partition("=")
    stage, dot, option = key.strip().partition(".")
    if not sep or not dot or stage not in STAGES:
        raise UsageError(f"--set {assignment!r}: expected STAGE.KEY=VALUE with STAGE one of {', '.join(STAGES)}")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    raw.setdefault(stage, {})[flag_key(option.strip())] = value


def _spelled(raw: dict) -> dict:
    """Recipe keys in one spelling (`size-policy` = `size_policy`, as flags on the command line), so a variant or
    `--set` overrides a key however either was written. Variant names are kept as written."""

    def keys(table: Any) -> Any:
        return {flag_key(k): v for k, v in table.items()} if isinstance(table, dict) else table

    spelled = {flag_key(k): keys(v) if k in STAGES else v for k, v in raw.items()}
    variants = spelled.get("variants")
    if isinstance(variants, dict):
        spelled["variants"] = {
            name: {stage: keys(table) for stage, table in stages.items()} if isinstance(stages, dict) else stages
            for name, stages in variants.items()
        }
    return spelled


_VAR = re.compile(r"\$\{(\w+)\}")


def _expanded(recipe: Recipe, path: Path, data_root: Path | None) -> Recipe:
    """`${data_root}`, `${VAR}` (environment) and `~` in every string value."""
    root = data_root or (Path(os.environ["PAIRFORGE_DATA"]) if os.environ.get("PAIRFORGE_DATA") else None)

    def expand(value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [expand(v, where) for v in value]
        if not isinstance(value, str):
            return value

        def substitute(match: re.Match) -> str:
            var = match.group(1)
            if var == "data_root" and root is not None:
                return str(root)
            if var in os.environ:
                return os.environ[var]
            fix = "pass --data-root or set PAIRFORGE_DATA" if var == "data_root" else f"set ${var}"
            raise UsageError(f"{path}: key {where}: ${{{var}}} is not set ({fix})")

        return os.path.expanduser(_VAR.sub(substitute, value))

    data = recipe.model_dump()
    for stage in STAGES:
        if isinstance(data.get(stage), dict):
            data[stage] = {k: expand(v, f"{stage}.{k}") for k, v in data[stage].items()}
    return Recipe.model_validate(data)


def click_command(words: list[str]):
    """The (Typer-vendored) Click command behind `pairforge WORDS...`, e.g. ["prep", "cityscapes"]."""
    from pairforge.cli import build_app

    command = typer.main.get_command(build_app(words[0] if words else None))
    for word in words:
        found = command.get_command(typer.Context(command), word) if hasattr(command, "get_command") else None
        if found is None:
            raise UsageError(f"pairforge {' '.join(words)}: no such command")
        command = found
    return command


def to_argv(words: list[str], positionals: list[str], options: dict[str, Any], where: str) -> list[str]:
    """`pairforge` argv for a stage. Keys must name the command's options; then the command parses the argv
    itself (without running), so types, choices and ranges are checked exactly as on the command line."""
    command = click_command(words)
    params = {}
    for param in command.params:
        if isinstance(param, TyperOption):
            for opt in [*param.opts, *param.secondary_opts]:
                params[flag_key(opt)] = param
    args = list(positionals)
    for key, value in options.items():
        param = params.get(flag_key(key))
        if param is None:
            close = difflib.get_close_matches(key, params, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{where}: unknown key {key!r} for pairforge {' '.join(words)}{hint}")
        args += _option_argv(param, key, value, where)
    try:
        command.make_context(f"pairforge {' '.join(words)}", list(args))
    except typer.TyperException as exc:
        raise UsageError(f"{where}: {exc.format_message()}") from None
    except UsageError as exc:  # a value parser's or callback's own one-line error
        raise type(exc)(f"{where}: {exc}") from None
    return [*words, *args]


def _option_argv(param: TyperOption, key: str, value: Any, where: str) -> list[str]:
    if param.is_flag:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: key {key!r} takes true or false, not {value!r}")
        on, off = param.opts[0], (param.secondary_opts or [None])[0]
        if flag_key(key) in map(flag_key, param.secondary_opts):  # the negative form, e.g. no_fast = true
            on, off = off, on
        chosen = on if value else off
        return [chosen] if chosen else []
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return [param.opts[0], text]


def bundled() -> list[tuple[str, str]]:
    """(name for `pairforge run NAME`, description) of the recipes that ship with pairforge."""
    return [(p.stem, parse_toml(p).get("description", "")) for p in sorted(RECIPES_DIR.glob("*.toml"))]
