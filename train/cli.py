"""`pairforge train`, `pairforge test` and `pairforge translate`.

The flags of `train` are generated from the fields of TrainConfig (names, defaults, help), so the two never
drift apart. torch is imported inside the commands only: `pairforge --help` stays fast.
"""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.table import Table

from pairforge.errors import UsageError
from pairforge.extras import require
from pairforge.invocation import command_line
from pairforge.parsing import parse_direction, parse_size
from pairforge.train.config import (
    CYCLE_GAN_DEFAULTS,
    GeneratorName,
    NormName,
    TrainConfig,
    default_name,
    make_config,
)

TRAIN_HELP = (
    "Train pix2pix on a paired dataset (ab or split layout), or CycleGAN on an unaligned one, into runs/<name>/.\n\n"
    "Flags keep the reference trainer's names and the paper's defaults (U-Net 256, 70x70 PatchGAN, batch 1,"
    " Adam 2e-4 / 0.5, 100 + 100 epochs). On a GPU the fast mode is on unless --no_fast.\n\n"
    "Examples:\n\n"
    "  pairforge train --dataroot datasets/facades --direction BtoA\n\n"
    "  pairforge train --name facades_pix2pix --continue\n\n"
    "  pairforge train --dataroot datasets/maps --netG resnet_9blocks --batch_size 16 --max_steps 2000\n\n"
    "  pairforge train --model cycle_gan --dataroot datasets/horse2zebra  (unaligned trainA/, trainB/)\n\n"
    "  pairforge train --dataroot datasets/facades --logger tensorboard,wandb\n\n"
    "  pairforge train --dataroot 'shards/train-{000000..000031}.tar' --name big  (webdataset, streamed)\n\n"
    "  pairforge train --dataroot datasets/cityscapes --gpus 8 --batch_size 4  (DDP via torchrun: global batch 32)\n\n"
    "  torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 --no-python pairforge"
    " train ...\n\n"
    "--model cycle_gan trains CycleGAN on the unaligned layout; where not given, it uses resnet_9blocks, instance"
    " norm, no dropout and lsgan (the CycleGAN paper's defaults)."
)

TOGGLES = {"fast", "compile", "cuda_graph"}
"""Boolean options shown as --x/--no_x; every other boolean is a reference-style flag such as --no_flip."""

SET_BY_RUN = {"world_size", "codings"}
"""Fields the run sets (recorded in config.json), not flags."""

ARCHITECTURE = {"model", "netG", "norm", "ngf", "no_dropout", "input_nc", "output_nc"}
"""Options that `test`/`translate` take for reference .pth files (pairforge checkpoints carry their own)."""


def _cli_type(annotation: Any) -> Any:
    """The type Typer sees for a config field: sizes and ranges are typed as text (`572x286`, `0,80`)."""
    if _is_tuple(annotation):
        return str
    if any(_is_tuple(arg) for arg in typing.get_args(annotation)):
        return str | None
    return annotation


def _is_tuple(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return typing.get_origin(annotation) is tuple


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed this option (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _option(name: str, field: FieldInfo) -> inspect.Parameter:
    default = field.default
    decls = [f"--{name}/--no_{name}"] if name in TOGGLES else [f"--{name}"]
    if isinstance(default, tuple):
        default = "x".join(map(str, default)) if default[0] != default[1] else str(default[0])
    elif isinstance(default, Path):
        default = str(default)
    panel = field.json_schema_extra["panel"]
    if name == "direction":  # AtoB/BtoA, also written AB/BA, as on every command
        option = typer.Option(default, *decls, help=f"{field.description} (AB, BA too)", rich_help_panel=panel,
                              parser=parse_direction)  # fmt: skip
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=str)
    option = typer.Option(default, *decls, help=field.description, rich_help_panel=panel)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=_cli_type(field.annotation)
    )


def _flag(name: str, *decls: str, help: str, panel: str | None = None) -> inspect.Parameter:
    option = typer.Option(False, *decls, help=help, rich_help_panel=panel)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=bool)


def _train_command() -> typing.Callable[..., None]:
    """A function whose signature lists every TrainConfig field as an option, plus the run-control flags."""
    resume_help = "Resume <runs_dir>/<name> from its latest checkpoint; flags given now override its config."
    extra = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        _flag("resume", "--continue", "--continue_train", help=resume_help, panel="Run"),
        _flag("overwrite", "--overwrite", help="Delete an existing run of this name first.", panel="Run"),
        _flag("quiet", "-q", "--quiet", help="No progress bar or summary."),
        _flag("as_json", "--json", help="Print the summary as JSON."),
    ]
    fields = [_option(name, field) for name, field in TrainConfig.model_fields.items() if name not in SET_BY_RUN]

    def train(ctx: typer.Context, resume: bool, overwrite: bool, quiet: bool, as_json: bool, **values: Any) -> None:
        require("train", "pairforge train")
        given = {k: v for k, v in values.items() if _on_command_line(ctx, k)}
        if values["model"] == "cycle_gan":  # options not typed take cycle_gan's defaults (TrainConfig applies them)
            values = {k: v for k, v in values.items() if k in given or k not in CYCLE_GAN_DEFAULTS}
        cfg = _resumed_config(values, given) if resume else make_config(**values)
        from pairforge.train.distributed import World, relaunch
        from pairforge.train.loop import train as run_training

        world = World.from_env()
        if cfg.gpus > 1 and not world.distributed:  # one process per GPU, through torchrun
            relaunch(cfg.gpus, cfg.device, command_line()[1:])
            return
        summary = run_training(cfg, resume=resume, overwrite=overwrite, quiet=quiet or as_json)
        if world.is_main:
            _report(summary, "training", quiet, as_json)

    train.__signature__ = inspect.Signature([*extra, *fields])  # type: ignore[attr-defined]
    train.__doc__ = TRAIN_HELP
    return train


def _resumed_config(values: dict[str, Any], given: dict[str, Any]) -> TrainConfig:
    """The saved config of the run, with the flags given on this command line on top (--max_steps is not
    inherited: it limits one invocation)."""
    name = values["name"] or (default_name(values["dataroot"], values["model"]) if values["dataroot"] else "")
    if not name:
        raise UsageError("--continue: give the run's --name (or its --dataroot)")
    path = Path(values["runs_dir"]) / name / "config.json"
    if not path.is_file():
        raise UsageError(f"--continue: no run to continue at {path.parent} (no config.json)")
    saved = json.loads(path.read_text())
    return make_config(**(saved | {"max_steps": None} | given | {"name": name, "runs_dir": values["runs_dir"]}))


def _entry(key: str, value: Any) -> str:
    return f"{key} {value:.4g}" if isinstance(value, float) else f"{key}: {value}"


def _report(summary: dict, title: str, quiet: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    if quiet:
        return
    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        text = ", ".join(_entry(k, v) for k, v in value.items()) if isinstance(value, dict) else str(value)
        table.add_row(key, text)
    Console(stderr=True).print(table)


# ---- test and translate -------------------------------------------------------------------------------------

Source = Annotated[
    str,
    typer.Argument(
        help="Run folder, run name under --runs_dir, .safetensors checkpoint, reference .pth, or .onnx from"
        " pairforge export."
    ),
]
Epoch = Annotated[str, typer.Option("--epoch", help="Checkpoint of a run: latest or an epoch number.")]
RunsDir = Annotated[Path, typer.Option("--runs_dir", help="Folder that holds the runs.")]
RunsDirDashed = Annotated[Path, typer.Option("--runs-dir", help="Folder that holds the runs.")]
Eval = Annotated[
    bool,
    typer.Option(
        "--eval", help="BatchNorm running statistics and no dropout (default: as in training, like the reference)."
    ),
]
TestDropout = Annotated[
    bool | None, typer.Option("--test_dropout/--no_test_dropout", help="Force dropout on (stochastic outputs) or off.")
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of test-time dropout and noise.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar or summary.")]
Json = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
Direction = Annotated[
    str | None,
    typer.Option("--direction", help="Override the run's direction: AtoB or BtoA (AB, BA).", parser=parse_direction),
]
CycleDirection = Annotated[
    str | None,
    typer.Option(
        "--direction",
        help="cycle_gan runs: AtoB (AB) uses G_A, BtoA (BA) uses G_B (default: the run's direction).",
        parser=parse_direction,
    ),
]
TestSize = Annotated[
    str | None,
    typer.Option(
        "--test_size",
        help="Resize inputs to N or WxH first (as the reference's test did). Default: each image's own size, padded"
        " to the generator's multiple and cropped back.",
    ),
]
_REF = "Reference .pth only"
Model = Annotated[
    Literal["pix2pix", "cycle_gan"],
    typer.Option("--model", help="cycle_gan: latest_net_G_A.pth with its _G_B.pth beside it.", rich_help_panel=_REF),
]
NetG = Annotated[GeneratorName, typer.Option("--netG", help="Generator architecture.", rich_help_panel=_REF)]
Norm = Annotated[NormName, typer.Option("--norm", help="Normalization layers.", rich_help_panel=_REF)]
Ngf = Annotated[int, typer.Option("--ngf", help="Generator filters in the first layer.", rich_help_panel=_REF)]
NoDropout = Annotated[bool, typer.Option("--no_dropout", help="G was trained without dropout.", rich_help_panel=_REF)]
InputNc = Annotated[int, typer.Option("--input_nc", help="Input channels.", min=1, rich_help_panel=_REF)]
OutputNc = Annotated[int, typer.Option("--output_nc", help="Output channels.", min=1, rich_help_panel=_REF)]


def _options(ctx: typer.Context, values: dict[str, Any], source: str) -> dict[str, Any]:
    """Options given on the command line; architecture flags only make sense for reference .pth files."""
    given = {k: v for k, v in values.items() if v is not None and _on_command_line(ctx, k)}
    if Path(source).suffix in (".pth", ".pt"):
        options = {k: v for k, v in values.items() if k in ARCHITECTURE} | given
        if options["model"] == "cycle_gan":  # architecture flags not typed take cycle_gan's defaults
            options = {k: v for k, v in options.items() if k in given or k not in CYCLE_GAN_DEFAULTS}
        return options
    misplaced = sorted(set(given) & ARCHITECTURE)
    if misplaced:
        raise UsageError(
            f"--{misplaced[0]}: only for reference .pth checkpoints (pairforge checkpoints know their architecture)"
        )
    return given


def _require_for(command: str, source: str) -> None:
    """torch (the `train` extra) for checkpoints; onnxruntime alone for .onnx models."""
    if Path(source).suffix == ".onnx":
        require("export", f"pairforge {command} with an .onnx model", ("onnxruntime",))
    else:
        require("train", f"pairforge {command}")


def _generator(
    source: str,
    runs_dir: Path,
    epoch: str,
    device: str,
    options: dict,
    eval_mode: bool,
    dropout: bool | None,
    test_size: str | None,
):
    size = parse_size(test_size, "--test_size") if test_size else None
    if Path(source).suffix == ".onnx":  # onnxruntime and NumPy only: no torch import
        from pairforge.train.onnx_model import load_onnx

        gen = load_onnx(Path(source), options, eval_mode, dropout)
    else:
        from pairforge.train.devices import resolve_device
        from pairforge.train.evaluate import load_generator

        gen = load_generator(source, runs_dir, epoch, resolve_device(device), options, eval_mode, dropout)
    gen.size = size
    return gen


def test(
    ctx: typer.Context,
    source: Source,
    dataroot: Annotated[Path | None, typer.Option("--dataroot", help="Dataset root (default: the run's).")] = None,
    phase: Annotated[str, typer.Option("--phase", help="Split to test.")] = "test",
    results_dir: Annotated[
        Path | None, typer.Option("--results_dir", help="Output folder (default: <run>/results/<phase>_<epoch>).")
    ] = None,
    num_test: Annotated[
        int | None, typer.Option("--num_test", help="Test at most this many pairs (default: all).", min=1)
    ] = None,
    epoch: Epoch = "latest",
    runs_dir: RunsDir = Path("runs"),
    eval_mode: Eval = False,
    test_dropout: TestDropout = None,
    direction: Direction = None,
    test_size: TestSize = None,
    seed: Seed = 0,
    device: Device = "auto",
    model: Model = "pix2pix",
    netG: NetG = "unet_256",
    norm: Norm = "batch",
    ngf: Ngf = 64,
    no_dropout: NoDropout = False,
    input_nc: InputNc = 3,
    output_nc: OutputNc = 3,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Translate a test split with a trained generator: images, index.html (input | output | target) and
    metrics.json (L1, PSNR, SSIM against the targets; for 16-bit/float targets MAE and RMSE in their units, depth
    in metres over measured pixels). Each image runs at its own size unless --test_size.

    Examples:

      pairforge test facades_pix2pix --dataroot datasets/facades

      pairforge test checkpoints/facades_label2photo/latest_net_G.pth --dataroot datasets/facades --direction BtoA

      pairforge test horse2zebra_cycle_gan  (CycleGAN: both directions and reconstructions, no metrics)
    """
    require("train", "pairforge test")
    _require_for("test", source)
    from pairforge.train.evaluate import run_test
    from pairforge.train.runlog import progress_bar

    values = {k: v for k, v in locals().items() if k in ARCHITECTURE | {"direction"}}
    options = _options(ctx, values, source)
    gen = _generator(source, runs_dir, epoch, device, options, eval_mode, test_dropout, test_size)
    if dataroot is None and gen.cfg.dataroot is None:
        raise UsageError("--dataroot is required for a checkpoint that does not name its dataset")
    if results_dir is None:
        results_dir = (
            gen.run.results / f"{phase}_{epoch}" if gen.run else Path("results") / f"{gen.checkpoint.stem}_{phase}"
        )
    with progress_bar(quiet or as_json) as progress:
        metrics = run_test(gen, dataroot or gen.cfg.dataroot, phase, results_dir, num_test, seed, progress)
    summary = {k: v for k, v in metrics.items() if k != "images"} | {"results": str(results_dir)}
    _report(summary, "test", quiet, as_json)


def translate(
    ctx: typer.Context,
    source: Source,
    in_dir: Annotated[Path, typer.Argument(help="Folder of input images.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the outputs (<stem>.png, at the input's size).")],
    epoch: Epoch = "latest",
    runs_dir: RunsDir = Path("runs"),
    eval_mode: Eval = False,
    test_dropout: TestDropout = None,
    direction: CycleDirection = None,
    test_size: TestSize = None,
    seed: Seed = 0,
    device: Device = "auto",
    model: Model = "pix2pix",
    netG: NetG = "unet_256",
    norm: Norm = "batch",
    ngf: Ngf = 64,
    no_dropout: NoDropout = False,
    input_nc: InputNc = 3,
    output_nc: OutputNc = 3,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Translate a folder of images that have no targets.

    Example:

      pairforge translate facades_pix2pix labels/ photos/

      pairforge translate horse2zebra_cycle_gan zebras/ horses/ --direction BtoA
    """
    _require_for("translate", source)
    from pairforge.train.runlog import progress_bar
    from pairforge.train.translate import translate_folder

    values = {k: v for k, v in locals().items() if k in ARCHITECTURE | {"direction"}}
    options = _options(ctx, values, source)
    gen = _generator(source, runs_dir, epoch, device, options, eval_mode, test_dropout, test_size)
    if direction is not None and gen.back is None:
        raise UsageError("--direction: only for cycle_gan runs (a pix2pix generator translates one way)")
    skipped: dict[str, str] = {}
    with progress_bar(quiet or as_json) as progress:
        count = translate_folder(gen, in_dir, out_dir, seed, progress, skipped)
    summary = {"checkpoint": str(gen.checkpoint), "translated": count, "skipped": skipped, "out_dir": str(out_dir)}
    _report(summary, "translate", quiet, as_json)


def export(
    source: Annotated[
        str, typer.Argument(help="Run folder, run name under --runs_dir, .safetensors checkpoint, or reference .pth.")
    ],
    out: Annotated[Path, typer.Argument(help="Output file (.onnx or .pt).")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="onnx or torchscript (default: from OUT's suffix, .pt/.ts = torchscript)."),
    ] = None,
    size: Annotated[str, typer.Option("--size", help="Probe size N or WxH (the model accepts other sizes).")] = "256",
    half: Annotated[bool, typer.Option("--half", help="float16 weights and inputs.")] = False,
    eval_mode: Annotated[
        bool, typer.Option("--eval", help="BatchNorm running statistics (default: each image's own, as in test).")
    ] = False,
    direction: CycleDirection = None,
    epoch: Epoch = "latest",
    runs_dir: RunsDirDashed = Path("runs"),
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Export a trained generator to ONNX or TorchScript: [0, 1] images in and out, dynamic height and width,
    dropout off. The file is loaded back and compared with PyTorch on a probe image (max difference under 1e-4,
    or the export fails).

    Examples:

      pairforge export facades_pix2pix facades.onnx

      pairforge export runs/maps_pix2pix/checkpoints/epoch_200.safetensors maps.pt --format torchscript --eval
    """
    if Path(source).suffix == ".onnx":
        raise UsageError(f"{source}: already an ONNX model; export reads a run or a checkpoint")
    fmt = fmt or ("torchscript" if out.suffix in (".pt", ".ts") else "onnx")
    require("train", "pairforge export")
    if fmt == "onnx":
        require("export", "pairforge export to ONNX")
    from pairforge.train.export import export as run_export

    options = {"direction": direction} if direction else {}
    summary = run_export(source, out, fmt, parse_size(size), half, eval_mode, runs_dir, epoch, options)
    _report(summary, "export", quiet, as_json)


def runs(
    runs_dir: Annotated[Path, typer.Argument(help="Folder that holds the runs.")] = Path("runs"),
    as_json: Json = False,
) -> None:
    """List the runs in a runs folder: dataset, model, steps, epoch, status and best test metrics.

    Examples:

      pairforge runs

      pairforge runs experiments/ --json
    """
    from pairforge.train.runs import best_text, list_runs

    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir}: no such folder")
    found = list_runs(runs_dir)
    if as_json:
        print(json.dumps(found, indent=1))
        return
    if not found:
        raise UsageError(f"{runs_dir}: no runs (folders with config.json)")
    table = Table(title=f"runs in {runs_dir}")
    for column in ("run", "dataset", "model", "steps", "epoch", "status", "best", "updated"):
        table.add_column(column, justify="right" if column == "steps" else "left")
    for run in found:
        cells = {**run, "steps": str(run.get("steps", "")), "best": best_text(run["best"])}
        table.add_row(
            *(cells.get(c, "") for c in ("run", "dataset", "model", "steps", "epoch", "status", "best", "updated"))
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add `train`, `test`, `translate`, `export` and `runs` to the root app."""
    app.command("train", help=TRAIN_HELP, no_args_is_help=True)(_train_command())
    app.command("test")(test)
    app.command("translate")(translate)
    app.command("export", no_args_is_help=True)(export)
    app.command("runs")(runs)
