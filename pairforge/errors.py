"""Errors shared by every command: each maps to one line on stderr and an exit code."""


class PairforgeError(Exception):
    """A fatal error the user can act on (exit code 1). The message is shown as one line."""

    exit_code = 1


class UsageError(PairforgeError):
    """A bad flag, a missing input folder, an output inside its input (exit code 2)."""

    exit_code = 2


class Interrupted(PairforgeError):
    """Ctrl-C (SIGINT) stopped a command; what it finished is kept (exit code 130, as the shell's convention)."""

    exit_code = 130
