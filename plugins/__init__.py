"""Bundled asttapi-server plugins (installed as the asttapi_plugins package)."""
