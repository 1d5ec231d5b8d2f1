"""The package's layout by role: few top-level entries, each saying what it owns, and imports that
only point downwards (the method knows no Lightning; nothing outside ``tools/`` imports a tool)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cofi_lightning"
FOLDERS = sorted(p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_at_most_ten_top_level_entries():
    entries = [p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 10, sorted(entries)
    assert all(
        p.is_dir() for p in PACKAGE.iterdir() if p.name not in ("__init__.py", "__pycache__")
    )


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_each_folder_says_what_it_owns(folder):
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
    assert doc and len(doc.split("\n\n")[0]) > 20, f"{folder.name}/__init__.py needs a docstring"


def _imports_a_tool(path: Path, module: str) -> bool:
    """``module`` is a tool's; a command's entry point (``__main__.py``) may share the commands'
    argument parsing (``tools.cli``), which nothing else outside ``tools/`` may import."""
    shared = path.name == "__main__.py" and module == "cofi_lightning.tools.cli"
    return module.startswith("cofi_lightning.tools") and not shared


@pytest.mark.parametrize("folder", [f for f in FOLDERS if f.name != "tools"], ids=lambda p: p.name)
def test_nothing_outside_tools_imports_a_tool(folder):
    bad = {
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in _modules(folder)
        for module in _imports(path)
        if _imports_a_tool(path, module)
    }
    assert not bad


def test_training_never_imports_deploy_at_the_top():
    """``cofi_lightning.deploy`` (ONNX, the ``deploy`` extra) is imported only lazily, from the
    export stage: a run without ``export.onnx`` never needs it."""
    bad = {
        f"{path.relative_to(PACKAGE)}: {node.module}"
        for folder in FOLDERS
        if folder.name not in ("deploy", "tools")
        for path in _modules(folder)
        for node in ast.parse(path.read_text()).body  # module level only
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("cofi_lightning.deploy")
    }
    assert not bad


def test_the_method_knows_no_lightning_and_no_run():
    above = ("lightning", "cofi_lightning.training", "cofi_lightning.run", "cofi_lightning.tools")
    bad = {
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in _modules(PACKAGE / "core")
        for module in _imports(path)
        if module.startswith(above)
    }
    assert not bad
