"""asttapi-server: AstTapi's dialplan-driven TAPI signalling, served over JSON-RPC."""

__version__ = "0.1.0"
