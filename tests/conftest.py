"""Shared test setup."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Unit tests use one torch thread: deterministic and kind to a 2-core CI machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
