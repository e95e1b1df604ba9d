"""Every hook is documented, in the hookspec module and in docs/plugins.md."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from asttapi_server import hookspecs

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("asttapi_"))
DOC = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_the_contracts_hooks_exist():
    assert HOOKS == sorted([
        "asttapi_startup", "asttapi_shutdown", "asttapi_ami_event_names", "asttapi_map_ami_event",
        "asttapi_map_channel_list",
        "asttapi_lookup_contact", "asttapi_client_event", "asttapi_call_finished", "asttapi_metrics",
    ])


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_docstring_saying_what_it_returns(name):
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc, f"{name} has no docstring"
    assert ":returns:" in doc
    assert "Deferred" in doc, f"{name} must say whether it may return a Deferred"
    assert "Called" in doc, f"{name} must say when it is called"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_in_the_docs(name):
    assert f"`{name}(" in DOC


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_not_firstresult(name):
    # The host calls each implementation itself; firstresult would be
    # misleading for lookups, where a Deferred is not None.
    assert not getattr(hookspecs, name).asttapi_spec.get("firstresult")


def test_module_holds_hooks_and_markers_only():
    public = {n for n in vars(hookspecs) if not n.startswith("_")}
    extra = public - set(HOOKS) - {"annotations", "hookspec", "hookimpl", "HookspecMarker",
                                   "HookimplMarker", "PROJECT"}
    assert extra == set()
