"""One spelling rule for every command: a multi-word flag is accepted with dashes and with underscores
(`--batch-size`, `--batch_size`); help shows the spelling the command declares (the reference trainer's for
`train`/`test`/`translate`, dashes elsewhere). The command line is rewritten to that spelling before Click parses
it, and recipe keys are matched by the same rule."""

from __future__ import annotations

from typer.core import TyperGroup


def flag_key(name: str) -> str:
    """The spelling-free identity of a flag or recipe key: `--size-policy`, `size_policy` -> `size_policy`."""
    return name.lstrip("-").replace("-", "_")


def declared_flags(command) -> dict[str, str]:
    """flag_key -> the long flag as `command` declares it (both forms of a toggle; keys two flags share are left
    out, so an exact spelling is then required)."""
    found: dict[str, set[str]] = {}
    for param in command.params:
        for opt in [*param.opts, *getattr(param, "secondary_opts", [])]:
            if opt.startswith("--"):
                found.setdefault(flag_key(opt), set()).add(opt)
    return {key: next(iter(opts)) for key, opts in found.items() if len(opts) == 1}


def canonical_argv(root: TyperGroup, argv: list[str]) -> list[str]:
    """`argv` with each long flag in the spelling of the (sub-)command it belongs to. Words that name a
    sub-command move the lookup into it; `--` ends the options; unknown flags are left for Click to report."""
    command, flags, out = root, declared_flags(root), []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            out.append(flags.get(flag_key(name), name) + eq + value)
            continue
        sub = getattr(command, "commands", {}).get(arg)
        if sub is not None:
            command, flags = sub, declared_flags(sub)
        out.append(arg)
    return out
