"""The CI profile holds for every Hypothesis test (tests/conftest.py)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from hypothesis import given, seed, settings, strategies as st

from tests import conftest


@pytest.fixture
def ci_profile():
    before = os.environ.get("ASTTAPI_HYPOTHESIS") or ("ci" if os.environ.get("CI") else "dev")
    settings.load_profile("ci")
    yield settings.default
    settings.load_profile(before)


def hypothesis_test(*decorators):
    @given(st.integers())
    def test(x):
        pass

    for decorate in decorators:
        test = decorate(test)
    return SimpleNamespace(obj=test, nodeid=f"t{len(decorators)}")


def test_ci_is_derandomized_without_a_database(ci_profile):
    assert ci_profile.derandomize and ci_profile.database is None and ci_profile.deadline is None
    conftest.pytest_collection_modifyitems(None, [hypothesis_test(), SimpleNamespace(obj=len, nodeid="x")])


@pytest.mark.parametrize("override", [
    settings(max_examples=400),
    settings(derandomize=False),
    seed(1234),
])
def test_a_test_that_overrides_the_ci_profile_stops_collection(ci_profile, override):
    with pytest.raises(pytest.UsageError, match="override the CI profile"):
        conftest.pytest_collection_modifyitems(None, [hypothesis_test(override)])
