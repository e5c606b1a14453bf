"""Shared test setup."""

from pathlib import Path

import pytest
import torch

from synthetic_logs import published_fixture


@pytest.fixture(autouse=True)
def _one_thread():
    """Unit tests use one torch thread: deterministic and kind to a 2-core CI machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """Trial logs of the ten published attn_act runs (tests/fixtures/attn_act_published.csv)."""
    return published_fixture(tmp_path_factory.mktemp("published"))


@pytest.fixture(scope="module")
def published_results(published):
    from tune_selcopy.analysis.report import read_results

    return read_results(str(published))
