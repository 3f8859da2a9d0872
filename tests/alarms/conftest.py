"""Fixtures of the alarms tests."""

from __future__ import annotations

from typing import Any

import pytest

from alarms import POINTS_SERVICE_SPEC, Spec, load_spec, synth


@pytest.fixture(scope="session")
def spec() -> Spec:
    return load_spec(POINTS_SERVICE_SPEC)


@pytest.fixture(scope="session")
def rehearsal_defs(spec: Spec) -> dict[str, Any]:
    return synth(spec, format="json", profile="rehearsal")


@pytest.fixture(scope="session")
def template(spec: Spec) -> dict[str, Any]:
    return synth(spec, format="cloudformation")
