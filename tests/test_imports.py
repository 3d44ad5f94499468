"""Dependencies point one way: the teacher side and the cache format never import the student
side, and the student side never imports the teacher runner or the recipes that load a teacher."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEACHER_ONLY = ("cache.teacher", "cache.dump", "cache.writer", "cache.augment", "cache.init_student")
"""Modules that run or load a teacher model: `student/` reads the cache instead."""


def imported(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources("cache"), ids=lambda p: str(p.relative_to(REPO)))
def test_cache_never_imports_student(path):
    assert not {name for name in imported(path) if name.split(".")[0] == "student"}


@pytest.mark.parametrize("path", sources("student"), ids=lambda p: str(p.relative_to(REPO)))
def test_student_never_imports_a_teacher_runner(path):
    assert not {name for name in imported(path) if name.startswith(TEACHER_ONLY)}


def test_the_walk_sees_relative_imports():
    assert "cache.teacher" in imported(REPO / "cache" / "dump.py")
    assert "cache.store.base" in imported(REPO / "cache" / "config.py")
