"""Installed commands: pyproject's console scripts, the package modules and the tools/ wrappers.

Each ``tools/<tool>.py`` runs ``seqdeca.commands.<command>.main``; both must print the same
``--help`` (apart from the program name argparse takes from ``sys.argv[0]``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# tools/<file>.py -> (seqdeca.commands.<module>, installed script)
WRAPPERS = {
    "video2mesh": ("video2mesh", "seqdeca-video2mesh"),
    "train_seq": ("train", "seqdeca-train"),
    "evaluate": ("evaluate", "seqdeca-evaluate"),
    "prepare_data": ("prepare", "seqdeca-prepare"),
}
# Wide enough that argparse never wraps, so a longer program name cannot move a line break.
ENV = os.environ | {"COLUMNS": "1000", "OMP_NUM_THREADS": "1"}


def _scripts() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def test_every_entry_point_is_a_callable_main() -> None:
    scripts = _scripts()
    assert sorted(scripts) == sorted(script for _, script in WRAPPERS.values())
    for name, target in scripts.items():
        module_name, _, attr = target.partition(":")
        assert module_name.startswith("seqdeca.commands."), name
        assert callable(getattr(importlib.import_module(module_name), attr)), name


@pytest.mark.parametrize("tool", sorted(WRAPPERS))
def test_wrapper_runs_the_package_main(tool: str) -> None:
    spec = importlib.util.spec_from_file_location(f"wrapper_{tool}", ROOT / "tools" / f"{tool}.py")
    wrapper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrapper)
    command = importlib.import_module(f"seqdeca.commands.{WRAPPERS[tool][0]}")
    assert wrapper.main is command.main


# Prints {tool: [exit code, stdout]} of ``--help`` for each {tool: target} in argv[1]: a target
# ending in .py is run as a script (a tools/ wrapper), any other as a module (``python -m``).
_HELPS = """
import contextlib, io, json, runpy, sys
result = {}
for tool, target in json.loads(sys.argv[1]).items():
    sys.argv, out, code = [target, "--help"], io.StringIO(), None
    with contextlib.redirect_stdout(out):
        try:
            if target.endswith(".py"):
                runpy.run_path(target, run_name="__main__")
            else:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code
    result[tool] = [code, out.getvalue()]
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def helps() -> dict[str, tuple[dict, dict]]:
    """tool -> ([code, stdout] of the wrapper, [code, stdout] of the module); two processes."""
    targets = [
        {tool: str(ROOT / "tools" / f"{tool}.py") for tool in WRAPPERS},
        {tool: f"seqdeca.commands.{module}" for tool, (module, _) in WRAPPERS.items()},
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HELPS, json.dumps(t)],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for t in targets
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "RuntimeWarning" not in err, err
        results.append(json.loads(out))
    return {tool: (results[0][tool], results[1][tool]) for tool in WRAPPERS}


def _without_prog(stdout: str) -> str:
    """Help text with the program name of its ``usage:`` line replaced by PROG."""
    return re.sub(r"\Ausage: \S+", "usage: PROG", stdout)


@pytest.mark.parametrize("tool", sorted(WRAPPERS))
def test_wrapper_and_module_print_the_same_help(helps: dict, tool: str) -> None:
    (code_tool, out_tool), (code_module, out_module) = helps[tool]
    assert code_tool == code_module == 0
    assert out_tool.startswith(f"usage: {tool}.py ")
    assert _without_prog(out_tool) == _without_prog(out_module)


def test_installed_script_prints_help() -> None:
    bin_dir = Path(sys.executable).parent
    script = shutil.which("seqdeca-evaluate", path=str(bin_dir))
    if script is None:
        pytest.skip(f"seqdeca-evaluate is not installed in {bin_dir}: run `pip install -e .`")
    proc = subprocess.run(
        [script, "--help"], env=ENV, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: seqdeca-evaluate")


def test_the_library_does_not_import_the_commands() -> None:
    """Commands sit on top: no module outside seqdeca/commands imports them."""
    package = ROOT / "seqdeca"
    offenders = [
        str(p.relative_to(ROOT))
        for p in package.rglob("*.py")
        if "commands" not in p.relative_to(package).parts[:1]
        and re.search(r"\bseqdeca\.commands\b|from seqdeca import commands", p.read_text())
    ]
    assert not offenders, f"imports of seqdeca.commands from the library: {offenders}"
