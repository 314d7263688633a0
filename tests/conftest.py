"""Shared test set-up: GPU tests are skipped, with the reason shown, where there is no CUDA."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The engine tests run last. Once OpenVINO (its TBB thread pool) lives in this process, a later test
    # that forks DataLoader workers (tests/test_evaluate.py) was followed, at the next child process
    # (tests/test_summary.py), by a SIGSEGV delivered to pytest itself — reproducible with just those three
    # files in that order, never with the engine tests after them. Forking a process that runs TBB threads
    # is unsafe; the tools never do both (glanet.evaluate does not load OpenVINO).
    items.sort(key=lambda item: "tests/engines/" in item.nodeid.replace("\\", "/"))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu: no CUDA device on this machine, so this GPU test has NOT run")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
