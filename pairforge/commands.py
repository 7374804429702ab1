"""The face's own commands: `pairforge run RECIPE`, `pairforge recipes`, `pairforge report RUN`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pairforge.errors import PairforgeError, UsageError
from pairforge.extras import require
from pairforge.recipes import RECIPES_DIR, bundled, recipe_path


def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (recipes/<name>.toml) or a bundled recipe's name.")],
    variant: Annotated[str | None, typer.Option(help="A named variant of the recipe.")] = None,
    variants: Annotated[
        str | None, typer.Option(help="Several variants: all, or NAME,NAME,... (each its own run).")
    ] = None,
    sweep: Annotated[
        list[str], typer.Option(help="Grid axis STAGE.KEY=V1,V2,... (repeatable): one run per grid point.")
    ] = [],  # noqa: B006
    pack: Annotated[
        str | None,
        typer.Option(help="Run several runs at once: N, or auto (as many as fit in GPU memory; CPU: 1 per 4 cores)."),
    ] = None,
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

    Several variants or sweep points are several runs, each in its own folder; --pack runs them side by side
    (prep stages first, one after another), the rest queue; a failing run does not stop the others.

    Examples:

      pairforge run recipes/facades.toml --data-root ~/data

      pairforge run recipes/cityscapes.toml --variant l1 --set train.batch_size=16 --dry-run

      pairforge run cityscapes --variants all --pack auto

      pairforge run cityscapes --variant l1_cgan --sweep train.lr=7e-5,2e-4,6e-4 --sweep train.n_layers_D=3,4
    """
    from pairforge.pack import expand, parse_pack, variant_list

    path = recipe_path(recipe)
    limit = parse_pack(pack) if pack else 1  # several runs without --pack: one after another
    members = expand(path, variant_list(path, variant, variants), sweep, set_, data_root)
    stage_flags = {"--from": from_, "--until": until, "--only": only}
    if len(members) == 1 and pack is None:
        _run_one(members[0].loaded, stage_flags, force, dry_run)
    else:
        _run_many(members, limit, set_, data_root, stage_flags, force, dry_run)


def _run_one(loaded, stage_flags: dict[str, str | None], force: bool, dry_run: bool, only_prep: bool = False) -> None:
    """One run's stages in this process (with `only_prep`: its prep stage alone, when selected)."""
    from pairforge.run import build_stages, decide, execute, print_plan, run_dir, select

    stages = select(build_stages(loaded), *stage_flags.values())
    if only_prep:
        stages = [s for s in stages if s.name == "prep"]
    folder = run_dir(loaded)
    decisions = [decide(stage, folder, force) for stage in stages]
    print_plan(decisions, loaded.name)
    if dry_run or not decisions:
        return
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(loaded.path, folder / "recipe.toml")
    execute(decisions, folder)


def _run_many(members, limit, sets, data_root, stage_flags, force: bool, dry_run: bool) -> None:
    """Prep stages one after another here, then the rest of every run in its own process, packed."""
    from pairforge.pack import print_members, run_pack, summary_table
    from pairforge.recipes import STAGES

    print_members(members)
    for member in members:
        _run_one(member.loaded, stage_flags, force, dry_run, only_prep=True)
    if dry_run or stage_flags["--only"] == "prep":
        return
    first = STAGES.index(stage_flags["--from"]) if stage_flags["--from"] in STAGES else 0
    later = {**stage_flags, "--from": None if stage_flags["--only"] else STAGES[max(first, STAGES.index("train"))]}

    def argv_of(member) -> list[str]:
        argv = ["run", str(member.loaded.path)] + (["--variant", member.variant] if member.variant else [])
        argv += [f"--set={s}" for s in sets] + [f"--sweep={s}" for s in member.sweep]
        argv += [f"{flag}={value}" for flag, value in later.items() if value]
        return argv + ([f"--data-root={data_root}"] if data_root else []) + (["--force"] if force else [])

    console = Console(stderr=True)
    outcomes = run_pack(members, argv_of, limit, console)
    console.print(summary_table(outcomes))
    failed = [o.member.name for o in outcomes if o.code]
    if failed:
        raise PairforgeError(f"{len(failed)} of {len(outcomes)} runs failed: {', '.join(failed)} (see <run>/pack.log)")


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
    require("train", "pairforge report", ("matplotlib",))
    from pairforge.report import write_report

    if not (run_folder / "config.json").is_file():
        raise UsageError(f"{run_folder} is not a run folder (no config.json); train first")
    print(f"report: {write_report(run_folder)}")


def demo() -> None:
    """The offline demo: writes its own raw folders (crops of scikit-image's bundled colour photos) under
    demo-out/, then runs the bundled `demo` recipe on them: grayscale -> colour, prep -> train -> test -> report.
    About two minutes on 2 CPU cores.

    Example:

      pairforge demo
    """
    require("demo", "pairforge demo")
    from pairforge.demo import run_demo

    run_demo()


def register(app: typer.Typer) -> None:
    for command in (run, recipes, report, demo):
        app.command(help=command.__doc__)(command)
