"""Dependencies point one way. Inside `cache/`, each sub-package may import only its own layer and
those below it: runtime < data < format < read < teacher. `student/` reads caches and never imports
the teacher side; nothing imports `student/` but the command line. No module imports itself back
through others."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("cache.runtime", "cache.data", "cache.format", "cache.read", "cache.teacher")
"""`cache/`'s sub-packages, lowest first: the common runtime, task data, the cache format, the read
path, the teacher side."""
STUDENT_MAY_IMPORT = ("cache", *LAYERS[:-1])
"""The student side reads caches: every layer but the teacher's (which loads and runs teachers)."""


def imported(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved), at any depth."""
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


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def layer(name: str) -> int | None:
    """The layer of a cache module (None for the package's face, `cache` itself)."""
    return next((i for i, prefix in enumerate(LAYERS) if name == prefix or name.startswith(prefix + ".")), None)


def ours(names: set[str], top: str) -> set[str]:
    return {name for name in names if name.split(".")[0] == top}


@pytest.mark.parametrize("path", sources("cache"), ids=lambda p: str(p.relative_to(REPO)))
def test_cache_imports_only_its_layer_and_below(path):
    own = layer(module_name(path))
    assert not ours(imported(path), "student")
    if own is None:  # cache/__init__.py, the face: it may reach the read path
        return
    above = {name for name in ours(imported(path), "cache") if (layer(name) or 0) > own}
    assert not above, f"{module_name(path)} ({LAYERS[own]}) imports {sorted(above)}"


@pytest.mark.parametrize("path", sources("student"), ids=lambda p: str(p.relative_to(REPO)))
def test_student_never_imports_the_teacher_side(path):
    names = ours(imported(path), "cache")
    assert all(name == "cache" or name.startswith(STUDENT_MAY_IMPORT[1:]) or layer(name) is None for name in names)
    assert not {name for name in names if layer(name) == len(LAYERS) - 1}


def test_no_import_circle():
    """Module -> the project's modules it imports (a `from package import name` counts as the
    package's module when `name` is a module), searched for a cycle."""
    paths = sources("cache") + sources("student") + [REPO / "cli.py"]
    modules = {module_name(p): p for p in paths}
    graph = {name: {m for m in imported(path) if m in modules and m != name} for name, path in modules.items()}
    for name in graph:  # the face imports its read path lazily, for `from cache import open_cache`
        graph[name].discard("cache")
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, f"import circle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_walk_sees_relative_and_nested_imports():
    assert "cache.teacher.runner" in imported(REPO / "cache" / "teacher" / "dump.py")
    assert "cache.format.store.base" in imported(REPO / "cache" / "teacher" / "config.py")
    assert layer("cache.format.store.base") == 2 and layer("cache") is None
