"""Suite-wide pytest settings."""

from __future__ import annotations

from asttapi_server.ami import speedups


def pytest_report_header(config) -> str:
    # Which AMI hot loops the suite exercises (ASTTAPI_PURE_PYTHON=1: the twins).
    return f"asttapi AMI parser: {speedups.describe()}"
