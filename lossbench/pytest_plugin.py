"""pytest hooks, options and thin fixtures for lossbench's tests and benchmarks.

Loaded once, by the root ``conftest.py`` (``pytest_plugins = ["lossbench.pytest_plugin"]``).

* ``--lossbench-scale/-device/-cache-dir/-data-dir`` (shared with the CLI through
  :func:`lossbench.config.add_run_options`), ``--lossbench-regen``, ``--lossbench-regen-all``.
* A test that takes ``run_config`` runs once per config of the scale's matrix
  (architecture x shortcut x batch size), with ids like ``resnet56-noshort-bs128-s0``.
* Session fixtures ``trained`` (the cached trainer), ``lossbench_data`` and ``lossbench_baseline``
  (a checker that compares metrics with ``baselines/<scale>/<config_id>.json``).
* The session ends with "baselines: N passed, N failed, N created, N updated, N unused".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .config import add_run_options

MARKERS = {
    "gpu": "needs a CUDA device; skipped (with a reason) when none is available",
    "slow": "minutes or more on a CPU; deselect with -m 'not slow'",
    "paper": "needs the paper scale (CIFAR-10, GPU hours)",
}

_STATS_KEY = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lossbench")
    add_run_options(group.addoption, prefix="lossbench-")
    group.addoption("--lossbench-regen", action="store_true",
                    help="rewrite baselines that differ (tolerances kept); the tests still fail, so it is never silent")
    group.addoption("--lossbench-regen-all", action="store_true",
                    help="rewrite baselines that differ and pass: for a deliberate re-baseline commit")
    group.addoption("--lossbench-baselines-dir", default=None,
                    help="root of the baselines (default <rootdir>/baselines)")


def pytest_configure(config: pytest.Config) -> None:
    from ._malloc import keep_freed_memory

    keep_freed_memory()  # the timings and the CLI then run under the same allocator settings
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.stash[_STATS_KEY] = {"passed": 0, "failed": 0, "created": 0, "updated": 0, "used": set()}


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs CUDA: torch.cuda.is_available() is False on this machine")
    if item.get_closest_marker("paper") is not None and item.config.getoption("lossbench_scale") != "paper":
        pytest.skip("paper-scale test: run with --lossbench-scale paper (CIFAR-10, a GPU)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "run_config" in metafunc.fixturenames:
        from .config import get_scale

        configs = get_scale(metafunc.config.getoption("lossbench_scale")).configs
        metafunc.parametrize("run_config", configs, ids=[c.config_id for c in configs], scope="session")


@pytest.fixture(scope="session")
def lossbench_scale(pytestconfig: pytest.Config):
    """The :class:`lossbench.config.Scale` chosen with ``--lossbench-scale``."""
    from .config import get_scale

    return get_scale(pytestconfig.getoption("lossbench_scale"))


@pytest.fixture(scope="session")
def lossbench_device(pytestconfig: pytest.Config):
    from .pipeline import device_of

    return device_of(pytestconfig.getoption("lossbench_device"))


@pytest.fixture(scope="session")
def lossbench_cache_dir(pytestconfig: pytest.Config) -> Path:
    """``--lossbench-cache-dir``, else a folder in pytest's cache (kept between runs, not in git), else
    (cache plugin disabled) :func:`lossbench.train.default_cache_dir`."""
    chosen = pytestconfig.getoption("lossbench_cache_dir")
    if chosen:
        return Path(chosen)
    if pytestconfig.cache is None:  # -p no:cacheprovider: the library's own default cache
        from .train import default_cache_dir

        return default_cache_dir()
    return Path(pytestconfig.cache.mkdir("lossbench"))


@pytest.fixture(scope="session")
def lossbench_results_dir(pytestconfig: pytest.Config, lossbench_scale) -> Path:
    """Where this session's surfaces go: ``<rootdir>/.benchmarks/surfaces/<scale>`` (the report reads them)."""
    path = Path(pytestconfig.rootpath) / ".benchmarks" / "surfaces" / lossbench_scale.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def lossbench_baselines_dir(pytestconfig: pytest.Config) -> Path:
    chosen = pytestconfig.getoption("lossbench_baselines_dir")
    return Path(chosen) if chosen else Path(pytestconfig.rootpath) / "baselines"


@pytest.fixture(scope="session")
def trained(run_config, lossbench_device, lossbench_cache_dir, pytestconfig):
    """The cached training result of ``run_config`` (trained on first use)."""
    from .train import train

    return train(run_config, device=lossbench_device, cache_dir=lossbench_cache_dir,
                 data_dir=pytestconfig.getoption("lossbench_data_dir"))


@pytest.fixture(scope="session")
def lossbench_data(run_config, pytestconfig):
    """The data set of ``run_config`` (as tensors)."""
    from .data import load_dataset

    return load_dataset(run_config, data_dir=pytestconfig.getoption("lossbench_data_dir"))


@pytest.fixture(scope="session")
def lossbench_baseline(pytestconfig: pytest.Config, lossbench_scale, lossbench_baselines_dir, lossbench_device):
    """``check(config_id, metrics)``: compare with the stored baseline; fails with the whole table."""
    from .baselines import BaselineMismatch, check, provenance

    stats = pytestconfig.stash[_STATS_KEY]
    regen = pytestconfig.getoption("lossbench_regen")
    regen_all = pytestconfig.getoption("lossbench_regen_all")

    def _check(config_id: str, metrics: dict[str, float], extra: dict[str, Any] | None = None):
        __tracebackhide__ = True
        path = lossbench_baselines_dir / lossbench_scale.name / f"{config_id}.json"
        stats["used"].add(path.resolve())
        outcome = check(path, metrics, config_id=config_id, scale=lossbench_scale.name,
                        source=provenance(str(lossbench_device)), regen=regen, regen_all=regen_all, extra=extra)
        stats[outcome.status] += 1
        if outcome.status != "passed":
            raise BaselineMismatch(outcome.message)
        return outcome

    return _check


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # xdist workers print nothing
        return
    stats = config.stash.get(_STATS_KEY, None)
    if not stats or not stats["used"]:
        return
    scale = config.getoption("lossbench_scale")
    root = Path(config.getoption("lossbench_baselines_dir") or Path(config.rootpath) / "baselines") / scale
    stored = {p.resolve() for p in root.glob("*.json") if not p.name.endswith(".obtained.json")}
    unused = sorted(stored - stats["used"])
    terminalreporter.write_line(
        f"baselines: {stats['passed']} passed, {stats['failed']} failed, {stats['created']} created, "
        f"{stats['updated']} updated, {len(unused)} unused"
    )
    for path in unused:
        terminalreporter.write_line(f"  unused: {path}")


@pytest.hookimpl(optionalhook=True)  # only called when pytest-benchmark is active
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Record torch, CUDA and the card with every saved benchmark run."""
    import torch

    machine_info["torch"] = str(torch.__version__)
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    machine_info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
