"""The package's imports point downward only.

Every top-level module or package of ``seqdeca`` has a tier (``TIERS``); a file may import its own
tier or a lower one, never a higher one. The check parses each ``seqdeca/**/*.py`` with ``ast``
(``import x`` and ``from x import y``, absolute and relative, at module level or inside a
function) and maps every import of ``seqdeca`` to the top-level name it lands in. A top-level name
missing from ``TIERS`` fails too, so a new package has to be given a tier.

tools/, experiments/ and benchmarks/ are scripts above the package and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import seqdeca

# Lowest first. A row holds the names of one tier; a new layer is one new row, a new member of a
# layer one more name in its row. ``__init__`` is seqdeca/__init__.py (the version); ``shards``
# imports only ``errors`` and is used by prep, inference and the commands, so it sits at the bottom.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "au_names", "cli", "shards"),
    ("config",),
    ("geometry", "io"),
    ("face_model",),
    ("render",),
    ("prep",),
    ("data", "models", "losses", "model_builder"),
    ("eval",),
    ("vis",),
    ("train", "inference", "evaluation"),
    ("commands",),
)
TIERS: dict[str, int] = {name: tier for tier, row in enumerate(LAYERS) for name in row}

PACKAGE_ROOT = Path(seqdeca.__file__).parent


def _module_parts(path: Path, root: Path) -> tuple[str, ...]:
    """``root/eval/metrics.py`` -> ``("eval", "metrics")``; ``root/eval/__init__.py`` ->
    ``("eval",)``."""
    parts = path.relative_to(root).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def _top_level(path: Path, root: Path) -> str:
    """The top-level name a file belongs to: ``eval`` for ``root/eval/metrics.py``, ``__init__``
    for the package's own ``__init__.py``, ``cli`` for ``root/cli.py``."""
    return path.relative_to(root).with_suffix("").parts[0]


def _imported_tops(node: ast.AST, path: Path, root: Path, package: str) -> list[str]:
    """The top-level names of ``package`` that one Import/ImportFrom node reaches ("" for the
    package's own ``__init__.py``: ``import seqdeca``, ``from seqdeca import __version__``); empty
    when it imports nothing of the package."""
    if isinstance(node, ast.Import):
        dotted = [alias.name.split(".") for alias in node.names]
        return [d[1] if len(d) > 1 else "" for d in dotted if d[0] == package]
    assert isinstance(node, ast.ImportFrom)
    if node.level == 0:
        target = (node.module or "").split(".")
        if target[0] != package:
            return []
        target = target[1:]
    else:
        here = _module_parts(path, root)
        # ``from . import x`` in a package's __init__ stays in that package; in a module it is
        # the module's package.
        base = here if path.name == "__init__.py" else here[:-1]
        up = node.level - 1
        if up > len(base):
            raise ValueError(f"{path}:{node.lineno}: relative import above the package")
        target = list(base[: len(base) - up]) + (node.module.split(".") if node.module else [])
    if target:
        return [target[0]]
    # ``from seqdeca import x`` / ``from .. import x``: x is a top-level module or package, or a
    # name defined in the package's __init__.py (``__version__``).
    return [alias.name if _is_module(root, alias.name) else "" for alias in node.names]


def _is_module(root: Path, name: str) -> bool:
    return (root / f"{name}.py").is_file() or (root / name / "__init__.py").is_file()


def layer_violations(root: Path, tiers: dict[str, int], package: str = "seqdeca") -> list[str]:
    """One line per import under ``root`` (the package directory) that points up ``tiers`` or
    names a top-level module without a tier; empty when the package is layered."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        own = _top_level(path, root)
        if own not in tiers:
            problems.append(f"{rel}: top-level '{own}' has no tier; add it to LAYERS")
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for top in _imported_tops(node, path, root, package):
                name = top or "__init__"
                if name not in tiers:
                    problems.append(
                        f"{rel}:{node.lineno} imports {name} (no tier; add it to LAYERS)"
                    )
                elif tiers[name] > tiers[own]:
                    problems.append(
                        f"{rel}:{node.lineno} imports {name} (tier {tiers[name]}) "
                        f"above its own tier {tiers[own]} ({own})"
                    )
    return problems


def test_package_imports_point_down() -> None:
    problems = layer_violations(PACKAGE_ROOT, TIERS)
    assert not problems, "imports that point up the layer order:\n" + "\n".join(problems)


def test_every_top_level_name_has_a_tier() -> None:
    """Also the other way: no stale row naming something that no longer exists."""
    present = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE_ROOT.iterdir()
        if (p.is_file() and p.suffix == ".py") or (p / "__init__.py").is_file()
    }
    assert present - TIERS.keys() == set(), "give these a tier in LAYERS"
    assert TIERS.keys() - present == set(), "these LAYERS names do not exist in seqdeca/"


# --- the checker itself, on a synthetic package ---------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return pkg


_TOY_TIERS = {"__init__": 0, "low": 0, "mid": 1, "high": 2}


def _toy(tmp_path: Path, extra: dict[str, str]) -> Path:
    files = {
        "__init__.py": "__version__ = '1'\n",
        "low.py": "import os\nfrom pkg import __version__\nimport pkg\n",
        "mid/__init__.py": "from . import core\n",
        "mid/core.py": "from ..low import thing\nfrom pkg import low\nimport pkg.low as lo\n",
        "high/__init__.py": "",
        "high/run.py": "from pkg.mid.core import x\nfrom .. import mid\n",
    }
    return _write(tmp_path, {**files, **extra})


def test_checker_accepts_downward_imports(tmp_path: Path) -> None:
    assert layer_violations(_toy(tmp_path, {}), _TOY_TIERS, package="pkg") == []


@pytest.mark.parametrize(
    ("rel", "text", "expected"),
    [
        ("low.py", "import os\nfrom pkg.mid import core\n", "pkg/low.py:2 imports mid (tier 1)"),
        ("mid/core.py", "import pkg.high.run\n", "pkg/mid/core.py:1 imports high (tier 2)"),
        ("mid/core.py", "from ..high import run\n", "pkg/mid/core.py:1 imports high (tier 2)"),
        ("mid/core.py", "from .. import high\n", "pkg/mid/core.py:1 imports high (tier 2)"),
        ("low.py", "from pkg import __version__, mid\n", "pkg/low.py:1 imports mid (tier 1)"),
        ("mid/__init__.py", "from ..high.run import x\n", "pkg/mid/__init__.py:1 imports high"),
        (
            "mid/core.py",
            "def f():\n    from pkg.high import run\n    return run\n",
            "pkg/mid/core.py:2 imports high (tier 2) above its own tier 1 (mid)",
        ),
        ("low.py", "from pkg.extra import y\n", "pkg/low.py:1 imports extra (no tier"),
        ("extra/__init__.py", "", "pkg/extra/__init__.py: top-level 'extra' has no tier"),
    ],
)
def test_checker_reports_upward_and_unknown_imports(
    tmp_path: Path, rel: str, text: str, expected: str
) -> None:
    problems = layer_violations(_toy(tmp_path, {rel: text}), _TOY_TIERS, package="pkg")
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_checker_ignores_other_packages_and_same_tier(tmp_path: Path) -> None:
    pkg = _toy(tmp_path, {"low.py": "import pkgother.high\nfrom pkgx import mid\n"})
    assert layer_violations(pkg, {**_TOY_TIERS, "side": 2}, package="pkg") == []
    pkg = _write(tmp_path, {"side.py": "from pkg.high import run\n"})
    assert layer_violations(pkg, {**_TOY_TIERS, "side": 2}, package="pkg") == []
