"""Import the bundled plugins whether or not asttapi_plugins is installed."""

from __future__ import annotations

from asttapi_server.plugin_host import _load, bundled_plugin_dir


def bundled(name: str):
    return _load(name, entry_points=[], search_paths=[bundled_plugin_dir()])
