"""The house rules of DESIGN.md that a refactor could quietly break."""
import ast
from pathlib import Path

KIPVS = Path(__file__).resolve().parent.parent.parent / "kipvs"


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_command_modules_do_not_import_each_other():
    offenders = {path.name: sorted(m for m in imported_modules(path) if m.startswith("kipvs.commands"))
                 for path in (KIPVS / "commands").glob("*.py")}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_nothing_below_the_commands_knows_typer_and_only_rendering_imports_rich_at_top_level():
    for path in KIPVS.rglob("*.py"):
        if path.name.startswith("cli") or path.parent.name == "commands":
            continue
        assert "typer" not in imported_modules(path), path
        if path.name != "render.py":
            top_level = {n.module for n in ast.parse(path.read_text()).body
                         if isinstance(n, ast.ImportFrom) and n.module}
            assert not any(m.startswith("rich") for m in top_level), path


def test_parsing_and_expansion_are_separate_modules():
    assert "kipvs.cluster" in imported_modules(KIPVS / "desired.py")
    assert not any(m.startswith("kipvs.desired") for m in imported_modules(KIPVS / "cluster.py"))
