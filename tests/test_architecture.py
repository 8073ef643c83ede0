"""The three rings hold: lower rings load neither Qt nor torch, and import-linter's contracts pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER_RING_PACKAGES = [
    "annotator.core", "annotator.io", "annotator.engine", "annotator.export",
    "annotator.postprocess", "annotator.plugin_host", "annotator.settings", "annotator.cli",
]
# Modules that define torch.nn.Module subclasses must import torch at module level; they are only
# ever imported from inside engine functions. Importing anything else must not pull them in.
TORCH_DEFINING_MODULES = {"annotator.engine.lite_medsam.tiny_vit"}


def _submodules(package: str) -> list[str]:
    base = ROOT / package.replace(".", "/")
    if base.with_suffix(".py").exists():
        return [package]
    names = []
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_lower_rings_import_neither_qt_nor_torch():
    modules = [m for pkg in LOWER_RING_PACKAGES for m in _submodules(pkg) if m not in TORCH_DEFINING_MODULES]
    assert len(modules) > 10
    code = (
        "import importlib, sys\n"
        f"mods = {modules!r}\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in ('PySide6', 'torch', 'segment_anything', 'superqt', 'SimpleITK', 'pydicom') if m in sys.modules]\n"
        "print('LOADED:' + ','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("LOADED:"), f"heavy modules loaded at import time: {out.stdout}"


def test_cli_help_does_not_load_qt_or_torch():
    code = (
        "import sys\n"
        "from annotator.cli import build_parser\n"
        "build_parser()\n"
        "print('LOADED:' + ','.join(m for m in ('PySide6', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("LOADED:")


def test_import_linter_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed in this environment")
    out = subprocess.run([str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def _tool(name: str) -> Path:
    tool = Path(sys.executable).with_name(name)
    if not tool.exists():
        pytest.fail(f"{name} is not installed: `make test` installs the test extras, which include it")
    return tool


def test_type_checker_passes():
    """mypy over the whole package (config in pyproject.toml: every function annotated, the pure and
    data rings strict)."""
    out = subprocess.run([str(_tool("mypy"))], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_passes_with_no_suppression_of_an_unselected_rule():
    """ruff with RUF100 selected: a `# noqa` for a rule that is not enabled (or never fires) fails."""
    out = subprocess.run([str(_tool("ruff")), "check", "annotator", "tests", "bench"], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_module_does_several_jobs_by_size():
    """No module of the package over 600 lines (a newcomer reads one job per file)."""
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "annotator").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long
