"""`pairforge run RECIPE`: the stages prep -> train -> test -> eval -> report, each one a pairforge command.

A stage is skipped when its fingerprint (its argv and the bytes of its input files) equals the one recorded when
it last completed (`runs/<name>/stages/<stage>.json`). An interrupted train stage resumes with `--continue`; a
stage whose recipe changed is re-run from scratch (`--overwrite`), as is every stage under `--force`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pairforge.errors import PairforgeError, UsageError
from pairforge.manifest_lines import MANIFEST_NAME, RECORD_LISTS, ManifestLines
from pairforge.recipes import STAGES, Loaded, to_argv


@dataclass
class Stage:
    name: str
    argv: list[str]
    inputs: list[Path] = field(default_factory=list)  # files whose bytes enter the fingerprint
    resumable: bool = False  # takes --continue after an interruption
    rebuild_flag: str | None = "--overwrite"  # how the command starts over when its recipe changed

    def fingerprint(self) -> str:
        digest = hashlib.sha256(json.dumps(self.argv).encode())
        for path in self.inputs:
            digest.update(_content(path))
        return digest.hexdigest()


VOLATILE_MANIFEST_KEYS = ("created", "command", "tool")
"""What a prep re-run that changed nothing may still rewrite in manifest.json: not part of the dataset (nor are
the files' recorded modification times)."""


def _content(path: Path) -> bytes:
    """The bytes of an input file that matter: for a dataset manifest, a digest of it without its volatile keys,
    read one record at a time."""
    if not path.is_file():
        return b"<missing>"
    if path.name != MANIFEST_NAME:
        return path.read_bytes()
    manifest = ManifestLines(path)
    header = {k: v for k, v in manifest.header.items() if k not in VOLATILE_MANIFEST_KEYS}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in RECORD_LISTS:
        for record in manifest.records(name):
            for output in record.get("outputs", ()):
                output.pop("mtime_ns", None)
            digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.digest()


@dataclass
class Decision:
    stage: Stage
    action: str  # run, skip, resume, rebuild
    why: str
    argv: list[str]


def run_dir(loaded: Loaded) -> Path:
    return Path(loaded.recipe.runs_dir) / loaded.name


def build_stages(loaded: Loaded) -> list[Stage]:
    """Every stage the recipe defines, as pairforge argv, validated against the commands."""
    recipe, where = loaded.recipe, str(loaded.path)
    folder = run_dir(loaded)
    stages: list[Stage] = []
    dataroot = None
    if recipe.prep is not None:
        prep = recipe.prep
        argv = to_argv(prep.command.split(), [*prep.inputs, prep.output], prep.options, f"{where}: [prep]")
        for folder_in in prep.inputs if prep.command != "fetch" else []:
            if not Path(folder_in).exists():
                raise UsageError(
                    f"{where}: key prep.inputs: {folder_in} does not exist; pass --data-root or fix the path"
                )
        layouts = _prep_layouts(prep)
        if recipe.train.get("model") == "cycle_gan" and "unaligned" not in layouts:
            raise UsageError(
                f"{where}: key train.model: cycle_gan needs an unaligned dataset; add 'unaligned' to prep.layout"
            )
        stages.append(Stage("prep", argv, rebuild_flag="--overwrite"))
        dataroot = Path(prep.output)
    train_options = {"dataroot": str(dataroot) if dataroot else None, "name": loaded.name,
                     "runs_dir": recipe.runs_dir} | recipe.train  # fmt: skip
    if train_options["dataroot"] is None:
        raise UsageError(f"{where}: key train.dataroot: give it, or a [prep] stage whose output it is")
    dataset_manifest = Path(train_options["dataroot"]) / "manifest.json"
    stages.append(Stage("train", to_argv(["train"], [], train_options, f"{where}: [train]"), [dataset_manifest],
                        resumable=True))  # fmt: skip
    checkpoint = folder / "checkpoints" / "latest.safetensors"
    if recipe.test is not None:
        stages.append(Stage("test", to_argv(["test"], [str(folder)], recipe.test, f"{where}: [test]"), [checkpoint],
                            rebuild_flag=None))  # fmt: skip
    if recipe.eval is not None:
        stages.append(Stage("eval", to_argv(["eval"], [str(folder)], recipe.eval, f"{where}: [eval]"), [checkpoint],
                            rebuild_flag=None))  # fmt: skip
    if recipe.report is not None:
        inputs = [folder / "log.jsonl", checkpoint, dataset_manifest]
        stages.append(Stage("report", to_argv(["report"], [str(folder)], recipe.report, f"{where}: [report]"),
                            inputs, rebuild_flag=None))  # fmt: skip
    return stages


def _prep_layouts(prep) -> list[str]:
    """The layouts a prep stage writes: its --layout, or for fetch the catalogue's kind of dataset."""
    if prep.command == "fetch":
        from pairforge.prep.fetch import CATALOGUE

        entry = CATALOGUE.get(prep.inputs[0] if prep.inputs else "")
        return ["unaligned" if entry and entry.kind == "cyclegan" else "ab"]
    return str(prep.options.get("layout", "ab")).split(",")


def select(stages: list[Stage], start: str | None, until: str | None, only: str | None) -> list[Stage]:
    for flag, value in (("--from", start), ("--until", until), ("--only", only)):
        if value is not None and value not in STAGES:
            raise UsageError(f"{flag} {value!r}: choose from {', '.join(STAGES)}")
    if only:
        return [s for s in stages if s.name == only]
    first = STAGES.index(start) if start else 0
    last = STAGES.index(until) if until else len(STAGES) - 1
    return [s for s in stages if first <= STAGES.index(s.name) <= last]


def decide(stage: Stage, folder: Path, force: bool) -> Decision:
    record = _record(folder, stage.name)
    current = stage.fingerprint()
    started_before = record is not None
    if force:
        return Decision(stage, "rebuild", "--force", _with(stage, stage.rebuild_flag if started_before else None))
    if record is None:
        return Decision(stage, "run", "never run", stage.argv)
    same = record.get("fingerprint") == current
    if same and record.get("status") == "done":
        return Decision(stage, "skip", f"unchanged since {record['finished']}", stage.argv)
    if same and stage.resumable:
        return Decision(stage, "resume", "interrupted: continues from its latest checkpoint",
                        _with(stage, "--continue"))  # fmt: skip
    why = "interrupted" if same else "recipe or inputs changed since it last ran"
    return Decision(stage, "rebuild", why, _with(stage, stage.rebuild_flag))


def _with(stage: Stage, flag: str | None) -> list[str]:
    return [*stage.argv, flag] if flag else stage.argv


def _record_path(folder: Path, stage: str) -> Path:
    return folder / "stages" / f"{stage}.json"


def _record(folder: Path, stage: str) -> dict | None:
    path = _record_path(folder, stage)
    return json.loads(path.read_text()) if path.is_file() else None


def _write_record(folder: Path, stage: Stage, status: str, fingerprint: str) -> None:
    path = _record_path(folder, stage.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    record = {"stage": stage.name, "status": status, "fingerprint": fingerprint, "argv": stage.argv,
              "finished" if status == "done" else "started": now}  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


def print_plan(decisions: list[Decision], name: str) -> None:
    table = Table(title=f"recipe run {name}", title_justify="left")
    for column in ("stage", "action", "why", "command"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        table.add_row(d.stage.name, d.action, d.why, "pairforge " + " ".join(d.argv))
    Console().print(table)


def execute(decisions: list[Decision], folder: Path) -> None:
    """Run the stages in order through the CLI's own entry point; a failing stage stops the run. Once a stage has
    run, a later stage planned as a skip is decided again: its inputs (a new checkpoint) may have changed."""
    from pairforge.cli import main

    console = Console(stderr=True)
    ran = False
    for d in decisions:
        if d.action == "skip" and ran:
            d = decide(d.stage, folder, force=False)
        if d.action == "skip":
            console.print(f"[dim]{d.stage.name}: skipped ({d.why})[/dim]")
            continue
        console.print(f"[bold]{d.stage.name}[/bold]: pairforge {' '.join(d.argv)}")
        _write_record(folder, d.stage, "started", d.stage.fingerprint())
        try:
            main(d.argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code:
            raise PairforgeError(f"stage {d.stage.name} failed (exit {code}); fix it and run the recipe again")
        _write_record(folder, d.stage, "done", d.stage.fingerprint())
        ran = True
