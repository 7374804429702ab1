"""The face's own commands: `pairforge run RECIPE`, `pairforge recipes`, `pairforge report RUN`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pairforge.errors import UsageError
from pairforge.recipes import RECIPES_DIR, bundled, load


def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (recipes/<name>.toml) or a bundled recipe's name.")],
    variant: Annotated[str | None, typer.Option(help="A named variant of the recipe.")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override: STAGE.KEY=VALUE (repeatable).")] = [],  # noqa: B006
    data_root: Annotated[
        Path | None, typer.Option("--data-root", envvar="PAIRFORGE_DATA", help="Root of the raw datasets.")
    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help="First stage to run.")] = None,
    until: Annotated[str | None, typer.Option(help="Last stage to run.")] = None,
    only: Annotated[str | None, typer.Option(help="Run this stage only.")] = None,
    force: Annotated[bool, typer.Option(help="Re-run stages even when unchanged.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the plan; run nothing.")] = False,
) -> None:
    """Run a recipe's stages (prep -> train -> test -> eval -> report), skipping those already done.

    Examples:

      pairforge run recipes/facades.toml --data-root ~/data

      pairforge run recipes/cityscapes.toml --variant l1 --set train.batch_size=16 --dry-run
    """
    from pairforge.run import build_stages, decide, execute, print_plan, run_dir, select

    path = recipe if recipe.suffix == ".toml" or recipe.exists() else RECIPES_DIR / f"{recipe}.toml"
    loaded = load(path, variant, set_, data_root)
    stages = select(build_stages(loaded), from_, until, only)
    folder = run_dir(loaded)
    decisions = [decide(stage, folder, force) for stage in stages]
    print_plan(decisions, loaded.name)
    if dry_run:
        return
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / "recipe.toml")
    execute(decisions, folder)


def recipes() -> None:
    """List the bundled recipes with their descriptions.

    Example:

      pairforge recipes
    """
    table = Table(title=f"recipes in {RECIPES_DIR}", title_justify="left")
    table.add_column("recipe")
    table.add_column("description")
    for name, description in bundled():
        table.add_row(name, description)
    Console().print(table)


def report(run_folder: Annotated[Path, typer.Argument(help="A run folder, runs/<name>.")]) -> None:
    """Write runs/<name>/report.html: recipe, dataset summary, loss curves, metrics and test samples.

    Example:

      pairforge report runs/facades
    """
    from pairforge.report import write_report

    if not (run_folder / "config.json").is_file():
        raise UsageError(f"{run_folder} is not a run folder (no config.json); train first")
    print(f"report: {write_report(run_folder)}")


def register(app: typer.Typer) -> None:
    for command in (run, recipes, report):
        app.command(help=command.__doc__)(command)
