"""The command line of the running command, recorded in manifests and run configs."""

import sys

_argv: list[str] | None = None


def set_argv(argv: list[str]) -> None:
    global _argv
    _argv = list(argv)


def command_line() -> list[str]:
    """`["pairforge", sub-command, args...]` as the user typed it (sys.argv when not run through `main`)."""
    return ["pairforge", *(sys.argv[1:] if _argv is None else _argv)]
