"""The `pairforge` command: one Typer app whose sub-commands come from `prep` and `train`."""

from __future__ import annotations

import importlib
import sys

import typer

from pairforge import __version__
from pairforge.errors import PairforgeError
from pairforge.extras import missing_extra
from pairforge.flags import canonical_argv
from pairforge.invocation import set_argv
from pairforge.resources import error_line

HELP = (
    "Raw image collections -> aligned image-to-image datasets -> pix2pix/CycleGAN models.\n\n"
    "Examples:\n\n"
    "  pairforge combine photos/ sketches/ datasets/faces --size 256\n\n"
    "  pairforge prep cityscapes ~/data/cityscapes datasets/cityscapes\n\n"
    "  pairforge check datasets/faces\n\n"
    "  pairforge demo  (offline: a small pix2pix learns grayscale -> colour; needs the demo extra)"
)

COMMAND_MODULES = {
    **dict.fromkeys(
        ("prep", "combine", "split", "pair", "unpair", "check", "fetch", "edges", "rmbg"), "pairforge.prep.cli"
    ),
    **dict.fromkeys(("run", "recipes", "report", "demo"), "pairforge.commands"),
    **dict.fromkeys(("train", "test", "translate", "export", "runs"), "pairforge.train.cli"),
    "eval": "pairforge.train.metrics.cli",
}
"""The module whose `register(app)` adds each command. `pairforge COMMAND` imports that module alone: a prep
command starts without the trainer's, the recipes' and the evaluation's modules (and Typer builds one group)."""


def _version(value: bool) -> None:
    if value:
        print(f"pairforge {__version__}")
        raise typer.Exit()


def root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Raw image collections -> aligned image-to-image datasets -> pix2pix/CycleGAN models."""


def build_app(command: str | None = None) -> typer.Typer:
    """The `pairforge` app with the commands of `command`'s module, or with every command (help, a typo)."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=HELP)
    app.callback()(root)
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else dict.fromkeys(COMMAND_MODULES.values())
    for module in modules:
        importlib.import_module(module).register(app)
    return app


def __getattr__(name: str) -> typer.Typer:
    """`pairforge.cli.app`: the whole command tree, built on first use."""
    if name != "app":
        raise AttributeError(name)
    globals()["app"] = build_app()
    return globals()["app"]


def _command_in(argv: list[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user mistakes become one line on stderr (a traceback only with --debug)."""
    argv = sys.argv[1:] if argv is None else argv
    set_argv(argv)
    try:
        try:
            command = typer.main.get_command(build_app(_command_in(argv)))
            command(args=canonical_argv(command, argv), prog_name="pairforge")
        except ModuleNotFoundError as exc:
            hint = missing_extra(exc)
            if hint is None:
                raise
            raise hint from exc
    except PairforgeError as exc:
        if "--debug" in argv:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C no command caught: Typer makes it a silent exit 130
        if isinstance(exc, SystemExit) and exc.code != 130:
            raise
        print("error: interrupted; run the same command again to finish", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # the machine or the filesystem refused (full disk, no memory): one line, exit 1
        line = error_line(exc)
        if line is None or "--debug" in argv:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
