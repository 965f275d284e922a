"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Toy tensors: one intra-op thread is as fast and does not stall when cores are shared."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def committed_reference_record() -> Path | None:
    """The packed reference record committed under examples/ (None when there is none)."""
    found = sorted(p.parent for p in ROOT.glob("examples/*/*reference*/train_gpt.py"))
    return found[0] if found else None
