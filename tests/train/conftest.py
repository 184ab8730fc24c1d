"""Fixtures shared by the trainer, VAE and encode tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a CPU shared with other jobs, OpenMP threads that outnumber free cores
    spin-wait and make each step 10-20x slower (measured: 14 s vs 0.6 s per tiny-VAE step)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
