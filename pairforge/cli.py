"""The `pairforge` command: one Typer app whose sub-commands come from `prep` and `train`."""

from __future__ import annotations

import sys

import typer

from pairforge import __version__
from pairforge.errors import PairforgeError
from pairforge.invocation import set_argv

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Raw image collections -> aligned image-to-image datasets -> pix2pix/CycleGAN models.\n\n"
    "Examples:\n\n"
    "  pairforge combine photos/ sketches/ datasets/faces --size 256\n\n"
    "  pairforge prep cityscapes ~/data/cityscapes datasets/cityscapes\n\n"
    "  pairforge check datasets/faces",
)


def _version(value: bool) -> None:
    if value:
        print(f"pairforge {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Raw image collections -> aligned image-to-image datasets -> pix2pix/CycleGAN models."""


def _register() -> None:
    from pairforge import commands
    from pairforge.prep import cli as prep_cli

    app.add_typer(prep_cli.prep_app, name="prep")
    prep_cli.register(app)
    commands.register(app)
    from pairforge.train import cli as train_cli

    train_cli.register(app)
    from pairforge.train.metrics import cli as eval_cli

    eval_cli.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user mistakes become one line on stderr (a traceback only with --debug)."""
    argv = sys.argv[1:] if argv is None else argv
    set_argv(argv)
    try:
        app(args=argv, prog_name="pairforge")
    except PairforgeError as exc:
        if "--debug" in argv:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
