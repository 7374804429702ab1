"""Command-line options shared by every prep command, and the one way a command runs a job and reports it."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pairforge.errors import UsageError
from pairforge.extras import require
from pairforge.parsing import parse_bytes, parse_choices
from pairforge.prep.executors import EXECUTORS
from pairforge.prep.imageio import ImageFormat
from pairforge.prep.runner import Job, RunResult, RunSettings, run_job
from pairforge.prep.writers import LAYOUTS, Formats, Layout, make_layouts
from pairforge.safety import real_path

Executor = Annotated[str, typer.Option("--executor", help="Where pairs are built: local (process pool) or ray.")]
RayAddress = Annotated[
    str | None, typer.Option("--ray-address", help="Ray cluster: auto or HOST:PORT (default: start a local Ray).")
]
Workers = Annotated[int, typer.Option("--workers", help="Parallel worker processes (0 = all cores).", min=0)]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would be done; write nothing.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Rebuild OUT instead of resuming it.")]
Verify = Annotated[
    bool,
    typer.Option(
        "--verify",
        help="On resume, re-hash every file kept from the last run (default: trust one with its recorded size and"
        " mtime; others are re-hashed, and rebuilt unless intact), and list the input folders again (default: reuse"
        " the last run's pairing while they are unchanged).",
    ),
]
Strict = Annotated[bool, typer.Option("--strict", help="Exit 1 when any input was rejected.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def _layout_extras(value: str) -> str:
    """`--layout webdataset` without the library stops while the flags are read, before any work."""
    if "webdataset" in value.split(","):
        require("webdataset", "--layout webdataset")
    return value


LayoutOpt = Annotated[
    str,
    typer.Option("--layout", help=f"Layouts to write, comma-separated: {', '.join(LAYOUTS)}.", callback=_layout_extras),
]
ShardSize = Annotated[
    str, typer.Option("--shard-size", help="--layout webdataset: image bytes per tar shard (1GB, 500MB, 100000).")
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="Output format png|jpg (default: png for exact data, jpg for photos)."),
]
Quality = Annotated[int, typer.Option("--quality", help="JPEG quality.", min=1, max=100)]
Seed = Annotated[int, typer.Option("--seed", help="Seed for split assignment and random crops.")]
SplitOpt = Annotated[str, typer.Option("--split", help="train,val,test as ratios (0.8,0.1,0.1) or counts (170,8,10).")]


@dataclass
class Reporting:
    """How a run reports: progress and table, quiet, or JSON; and whether rejections fail it."""

    quiet: bool = False
    as_json: bool = False
    strict: bool = False


def layouts_from(text: str, shard_size: str = "1GB") -> list[Layout]:
    return make_layouts(parse_choices(text, "--layout", tuple(LAYOUTS)), parse_bytes(shard_size, "--shard-size"))


def formats_from(format_: str | None, quality: int, default_a: str, default_b: str) -> Formats:
    """Per-side output formats: `--format` sets both, otherwise each side keeps its dataset default."""
    if format_ is not None:
        parse_choices(format_, "--format", ("png", "jpg"))
    return Formats(ImageFormat(format_ or default_a, quality), ImageFormat(format_ or default_b, quality))


def run_settings(
    workers: int,
    overwrite: bool,
    dry_run: bool,
    executor: str = "local",
    ray_address: str | None = None,
    verify: bool = False,
) -> RunSettings:
    """RunSettings from the shared flags, with `--executor` checked."""
    if executor not in EXECUTORS:
        raise UsageError(f"--executor {executor!r}: choose from {', '.join(EXECUTORS)}")
    return RunSettings(workers, overwrite, dry_run, executor=executor, ray_address=ray_address, verify=verify)


def pairing_reuse(out: Path, verify: bool) -> Path | None:
    """Where a command may take the last run's pairing from (see prep/saved_pairing.py): its output folder, or
    nowhere under --verify."""
    return None if verify else out


def execute(job: Job, settings: RunSettings, reporting: Reporting) -> RunResult:
    """Run `job`, print its summary (table or JSON), and exit 1 under --strict when something was rejected."""
    settings.progress = settings.progress and not (reporting.quiet or reporting.as_json)
    result = run_job(job, settings)
    summary = summarize(job, result, settings.dry_run)
    if reporting.as_json:
        print(json.dumps(summary, indent=1))
    elif not reporting.quiet:
        print_summary(summary)
    if reporting.strict and result.rejected:
        print(
            f"error: {result.rejected} inputs rejected (--strict); see {job.out}/manifest.json",
            file=sys.stderr,
        )
        raise typer.Exit(1)
    return result


def summarize(job: Job, result: RunResult, dry_run: bool) -> dict:
    pairs_done = result.written + result.skipped
    return {
        "output": str(job.out),
        "dry_run": dry_run,
        "planned": len(job.pairs),
        "written": result.written,
        "rebuilt": result.rebuilt,
        "skipped": result.skipped,
        "rejected": result.rejected,
        "rejected_by_reason": result.rejected_by_kind,
        "counts": result.counts,
        "seconds": round(result.seconds, 3),
        "pairs_per_second": round(pairs_done / result.seconds, 1) if result.seconds else None,
    }


def print_summary(summary: dict) -> None:
    title = "dry run: nothing written" if summary["dry_run"] else f"dataset: {summary['output']}"
    table = key_value_table(title)
    if summary["dry_run"]:
        table.add_row("pairs to build", str(summary["planned"]))
    else:
        table.add_row("pairs", str(sum(summary["counts"].values())))
        for split, count in summary["counts"].items():
            table.add_row(f"  {split}", str(count))
        table.add_row("written", str(summary["written"]))
        if summary["rebuilt"]:
            table.add_row("  rebuilt (files missing or changed)", str(summary["rebuilt"]))
        table.add_row("skipped (already done)", str(summary["skipped"]))
    table.add_row("rejected", str(summary["rejected"]))
    for reason, count in summary["rejected_by_reason"].items():
        table.add_row(f"  {reason}", str(count))
    if not summary["dry_run"]:
        table.add_row("time", f"{summary['seconds']:.2f} s")
        if summary["pairs_per_second"]:
            table.add_row("throughput", f"{summary['pairs_per_second']} pairs/s")
    Console().print(table)


def key_value_table(title: str) -> Table:
    """A two-column summary table whose title sits on its own line above it."""
    table = Table(title=title, show_header=False, title_justify="left", min_width=len(title))
    table.add_column(style="bold")
    table.add_column(justify="right")
    return table


def source_path(path: Path) -> Path:
    return real_path(path)


DataRoot = Annotated[
    Path | None,
    typer.Option("--data-root", envvar="PAIRFORGE_DATA", help="Root of raw datasets; SRC defaults to ROOT/<dataset>."),
]


def raw_source(src: Path | None, data_root: Path | None, folder: str, expected: str, download: str) -> Path:
    """The raw dataset folder: SRC, or `<--data-root>/<folder>`; missing -> one line naming what was expected."""
    if src is None and data_root is None:
        raise UsageError(f"give SRC or --data-root (or set PAIRFORGE_DATA): where the unpacked {folder} data lives")
    path = source_path(src if src is not None else data_root / folder)
    if not path.is_dir():
        raise UsageError(f"{path} does not exist: expected {expected} (download: {download})")
    return path
