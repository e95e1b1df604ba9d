"""Suite-wide pytest settings."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI (and anyone who sets ASTTAPI_HYPOTHESIS=ci) runs the same examples every
# time and keeps no example database: a red run must be red for a reason in
# the code, not for one that an earlier run saved in .hypothesis/.  Locally the
# default profile explores at random and remembers what it found.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile(
    os.environ.get("ASTTAPI_HYPOTHESIS") or ("ci" if os.environ.get("CI") else "dev")
)
