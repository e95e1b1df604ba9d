"""No import cycle between the core and the AMI package (issue 25 item 4).

``core`` builds actions with ``ami.actions`` and reads events with
``ami.normalise``; ``ami`` must then never reach ``core``, not even through a
third module of ours. What both need (event names under one case rule,
Uniqueids) lives in the leaf :mod:`asttapi_server.idents`. Read as source,
like the purity test: nothing is imported.
"""

from __future__ import annotations


from .test_purity import PACKAGE, ROOT, closure, imports_of

LEAF = f"{PACKAGE}.idents"


def modules_of(package: str) -> list[str]:
    folder = ROOT / PACKAGE / package
    return [f"{PACKAGE}.{package}"] + [f"{PACKAGE}.{package}.{p.stem}" for p in sorted(folder.glob("*.py"))
                                       if p.stem != "__init__"]


def reaches(sources: list[str], package: str) -> dict[str, str]:
    """Modules of ``package`` reached from ``sources`` -> the chain's first module."""
    prefix = f"{PACKAGE}.{package}"
    found = {}
    for source in sources:
        for name in closure(source):
            if name == prefix or name.startswith(prefix + "."):
                found.setdefault(name, source)
    return found


def test_ami_never_imports_the_core_even_through_other_modules():
    assert reaches(modules_of("ami"), "core") == {}


def test_so_there_is_no_cycle_between_core_and_ami():
    core_to_ami = reaches(modules_of("core"), "ami")
    ami_to_core = reaches(modules_of("ami"), "core")
    assert core_to_ami, "the core builds actions and reads events with ami (or this test is stale)"
    assert not (core_to_ami and ami_to_core)


def test_the_names_leaf_imports_nothing_of_ours():
    assert {n for n in imports_of(LEAF) if n.split(".")[0] == PACKAGE} == set()


def test_both_sides_use_the_leaf():
    assert LEAF in closure(f"{PACKAGE}.ami.parser")
    assert LEAF in closure(f"{PACKAGE}.ami.normalise")
    assert LEAF in closure(f"{PACKAGE}.core.control")


def test_the_check_finds_a_cycle(tmp_path, monkeypatch):
    """The checker itself: ami -> (other) -> core is found."""
    pkg = tmp_path / PACKAGE
    for sub in ("core", "ami"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "other.py").write_text("from .core import model\n")
    (pkg / "core" / "model.py").write_text("from ..ami import parser\n")
    (pkg / "ami" / "parser.py").write_text("def f():\n    from .. import other\n")
    from . import test_purity

    monkeypatch.setattr(test_purity, "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert f"{PACKAGE}.core.model" in reaches(modules_of("ami"), "core")


def test_web_never_imports_the_composition():
    """``service`` builds ``web``'s listeners; ``web`` needs nothing of it (issue 25 item 5)."""
    found = {m: closure(m).get(f"{PACKAGE}.service") for m in modules_of("web")}
    assert {m: via for m, via in found.items() if via} == {}
