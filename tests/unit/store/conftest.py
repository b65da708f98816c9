"""Fixtures for the store tests: a fake kubo RPC API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_kubo import FakeKubo, running_fake_kubo


@pytest.fixture
def fake_kubo() -> Iterator[FakeKubo]:
    with running_fake_kubo() as state:
        yield state
