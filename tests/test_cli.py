"""The root command: each command comes from the module the table names, and only that module is imported."""

from __future__ import annotations

import subprocess
import sys

import typer

from pairforge.cli import COMMAND_MODULES, build_app


def test_every_command_is_built_from_the_module_the_table_names():
    assert set(typer.main.get_command(build_app()).commands) == set(COMMAND_MODULES)
    for command, module in COMMAND_MODULES.items():
        alone = typer.main.get_command(build_app(command))
        assert set(alone.commands) == {name for name, owner in COMMAND_MODULES.items() if owner == module}


def test_a_prep_command_imports_neither_the_trainer_nor_the_recipes(tmp_path):
    code = (
        "import sys; from pairforge.cli import main\n"
        f"try: main(['combine', {str(tmp_path)!r}, {str(tmp_path)!r}, {str(tmp_path / 'out')!r}, '-q'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pairforge.train', 'pairforge.recipes', 'torch'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
