"""The pure ring is pure: no reactor, logging, clock, randomness, environment or I/O.

Every module docs/architecture.md calls pure is read as source (nothing is
imported), and so is every module of ours it imports, transitively: a pure
module that imports an impure one of ours is impure too. Each import, at
module level or inside a function, is checked against :data:`FORBIDDEN`.
The list of pure modules is read from the docs' ring list, so the docs and
this test cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "asttapi_server"

#: Top-level modules a pure module may not import: a reactor or any other
#: Twisted part (logging included), logging, the clock, randomness, the
#: environment and the file system, sockets and threads.
FORBIDDEN = frozenset({
    "twisted", "logging", "time", "datetime", "os", "random", "secrets", "uuid", "socket", "select",
    "selectors", "threading", "asyncio", "subprocess", "signal", "shutil", "tempfile", "pathlib",
    "io", "sys",
})


def pure_modules() -> list[str]:
    """The modules the docs' ring list names as pure (``core/*`` expanded)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    ring = text[text.index("1. **Pure (sans-IO)**"):text.index("2. **Adapters**")]
    names = []
    for name in re.findall(r"`(asttapi_server(?:\.\w+)+)`", ring):
        names.append(name)
    if "everything in `asttapi_server.core`" in " ".join(ring.split()):
        names += [f"{PACKAGE}.core.{p.stem}" for p in sorted((ROOT / PACKAGE / "core").glob("*.py"))
                  if p.stem != "__init__"]
        names.append(f"{PACKAGE}.core")
    return sorted(set(names))


def source_of(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports_of(module: str) -> set[str]:
    """Every module ``module`` imports (absolute names; ``from x import y`` gives x and x.y)."""
    path = source_of(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    # Our own names that are modules (not functions or classes) and their packages.
    ours = set()
    for name in found:
        if name.split(".")[0] != PACKAGE:
            ours.add(name)
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            candidate = ".".join(parts[:i])
            if source_of(candidate).is_file():
                ours.add(candidate)
    return ours


def closure(module: str) -> dict[str, str]:
    """Every module reached from ``module`` -> the module of ours that imports it first."""
    seen: dict[str, str] = {module: module}
    todo = [module]
    while todo:
        current = todo.pop()
        for name in imports_of(current):
            if name in seen:
                continue
            seen[name] = current
            if name.split(".")[0] == PACKAGE:
                todo.append(name)
    return seen


def test_the_docs_name_the_pure_ring():
    pure = pure_modules()
    for expected in ("asttapi_server.ami.parser", "asttapi_server.ami.message", "asttapi_server.ami.normalise",
                     "asttapi_server.ami.actions", "asttapi_server.core.model", "asttapi_server.core.control",
                     "asttapi_server.clients.codec"):
        assert expected in pure
    for module in pure:
        assert source_of(module).is_file(), f"docs/architecture.md names {module}, which does not exist"


def test_every_pure_module_imports_nothing_impure_even_through_our_own_modules():
    problems = []
    for module in pure_modules():
        for name, importer in closure(module).items():
            if name.split(".")[0] in FORBIDDEN:
                problems.append(f"{module}: {importer} imports {name}")
    assert problems == []


def test_the_scan_catches_an_impure_import_through_another_module(tmp_path, monkeypatch):
    """The checker itself: an indirect import of logging is found (so the test above can fail)."""
    pkg = tmp_path / PACKAGE
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("from . import b\n")
    (pkg / "core" / "b.py").write_text("def f():\n    import logging\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    reached = closure(f"{PACKAGE}.core.a")
    assert reached["logging"] == f"{PACKAGE}.core.b"
