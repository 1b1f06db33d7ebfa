"""Shared fixtures: the real data folder (../shared/data, or $PCSEG_SHARED_DATA)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("PCSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real-data folder; tests using it skip (never fail) where it is absent."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set PCSEG_SHARED_DATA)")
    return root


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread (`pytestmark = pytest.mark.usefixtures("one_thread")`): on the few
    shared cores tests run on, OpenMP threads waiting on each other cost several times the
    work (measured: 2m23 -> 48 s for tests/test_configs.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
