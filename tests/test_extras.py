"""Every third-party import is declared in pyproject.toml, and a missing optional one is one line naming its extra."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from pairforge.extras import EXTRAS, MissingExtra, missing_extra, require

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=~!; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def extra_distributions(extra: str) -> set[str]:
    """The distributions an extra installs, following `pairforge[...]` references."""
    found = set()
    for requirement in PROJECT["optional-dependencies"][extra]:
        if requirement.startswith("pairforge["):
            for inner in requirement[len("pairforge[") : requirement.index("]")].split(","):
                found |= extra_distributions(inner)
        else:
            found.add(_name(requirement))
    return found


def imported_modules() -> set[str]:
    """Top-level names of the third-party modules that pairforge's own code imports."""
    names = set()
    for folder in ("pairforge", "prep", "train"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.partition(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.partition(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("pairforge", "__future__")}


def test_every_imported_module_is_declared_core_or_in_its_extra():
    core = {_name(r) for r in PROJECT["dependencies"]}
    distributions = packages_distributions()
    optional = {module for modules in EXTRAS.values() for module in modules}
    for module in sorted(imported_modules()):
        names = {_name(d) for d in distributions.get(module, [module])}  # not installed here: named alike
        if module in optional:
            extras = [extra for extra, modules in EXTRAS.items() if module in modules]
            for extra in extras:
                assert names & extra_distributions(extra), f"{module}: not installed by pairforge[{extra}]"
        else:
            assert names & core, f"{module}: imported but neither a core dependency nor in pairforge.extras.EXTRAS"


def test_extras_table_names_real_extras():
    assert set(EXTRAS) <= set(PROJECT["optional-dependencies"])
    assert {"matplotlib", "skimage"} <= set(EXTRAS["train"]) and "braceexpand" in EXTRAS["webdataset"]


def test_require_names_the_extra_and_imports_nothing():
    require("train", "pairforge train", ("json",))
    with pytest.raises(MissingExtra) as raised:
        require("export", "pairforge export to ONNX", ("no_such_module_here",))
    assert str(raised.value) == "pairforge export to ONNX needs no_such_module_here: pip install 'pairforge[export]'"
    assert raised.value.exit_code == 2
    assert "no_such_module_here" not in sys.modules


def test_a_failed_optional_import_becomes_the_hint():
    hint = missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch.nn"))
    assert str(hint) == "torch is not installed: pip install 'pairforge[train]'"
    assert missing_extra(ModuleNotFoundError("x", name="not_ours")) is None


def test_runs_on_a_missing_folder_exits_2_in_both_forms(cli, tmp_path):
    for args in ((), ("--json",)):
        result = cli("runs", tmp_path / "nowhere", *args)
        assert result.code == 2 and "no such folder" in result.err and not result.out
