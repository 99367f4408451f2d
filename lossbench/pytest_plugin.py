"""pytest hooks, options and thin fixtures for lossbench's tests and benchmarks.

Loaded once, by the root ``conftest.py`` (``pytest_plugins = ["lossbench.pytest_plugin"]``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .config import add_run_options

MARKERS = {
    "gpu": "needs a CUDA device; skipped (with a reason) when none is available",
    "slow": "minutes or more on a CPU; deselect with -m 'not slow'",
    "paper": "needs the paper scale (CIFAR-10, GPU hours)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lossbench")
    add_run_options(group.addoption, prefix="lossbench-")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs CUDA: torch.cuda.is_available() is False on this machine")


@pytest.fixture(scope="session")
def lossbench_scale(pytestconfig: pytest.Config) -> str:
    return pytestconfig.getoption("lossbench_scale")


@pytest.fixture(scope="session")
def lossbench_device(pytestconfig: pytest.Config) -> str:
    return pytestconfig.getoption("lossbench_device")


@pytest.fixture(scope="session")
def lossbench_cache_dir(pytestconfig: pytest.Config) -> Path:
    """``--lossbench-cache-dir``, else a folder in pytest's cache (kept between runs, not in git)."""
    chosen = pytestconfig.getoption("lossbench_cache_dir")
    if chosen:
        return Path(chosen)
    return Path(pytestconfig.cache.mkdir("lossbench"))
