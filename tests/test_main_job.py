"""What keeps the main job within its minutes, and correct.

The helper processes (lossbench.parallel): every unit is computed once, by the session or a helper; a
helper's error or death leaves the unit to the session; a study computed in a helper is the study
computed in the session. The stored direction pairs (reproduce.stored_pairs): only a baseline of the
same weights that stores a whole pair gives it, and a stored pair reaches the claims but not the check."""

import dataclasses
import os
import time
from pathlib import Path

import pytest
import torch

from lossbench.config import SCALES
from lossbench.parallel import Helpers, StudyQueue, Unit, compute_unit, run_helper, unit_key
from lossbench.reference_nets import load_reference, ship
from lossbench.reproduce import converged, pair_suffix, stored_pairs, study_rest
from lossbench.train import train

ROOT = Path(__file__).parent.parent
pytest_plugins = ["pytester"]


def _units(keys, tmp_path, **kw):
    return [Unit(key=k, config_id=k, scale="ci", kind="nets", part="rest", baselines_dir=str(tmp_path),
                 results_dir=str(tmp_path), **kw) for k in keys]


@pytest.fixture
def importable_tests(monkeypatch):
    """Helpers import tests.parallel_units: put the repository root on their path."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def test_a_unit_is_claimed_once(tmp_path):
    queue = StudyQueue.create(tmp_path / "q", _units("ab", tmp_path))
    assert queue.claim("a") and not queue.claim("a") and queue.claimant("a") == os.getpid()
    assert queue.result("a") is None
    queue.finish("a", {"value": 3})
    assert queue.result("a") == {"value": 3} and [u.key for u in queue.units()] == ["a", "b"]


def test_bad_queues_and_units_are_refused(tmp_path):
    with pytest.raises(ValueError, match="repeat"):
        StudyQueue.create(tmp_path / "q", _units("aa", tmp_path))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty"):
        StudyQueue.create(tmp_path / "used", _units("a", tmp_path))
    with pytest.raises(ValueError, match="'rest' or 'all'"):
        Unit(key="a", config_id="a", scale="ci", kind="nets", part="half", baselines_dir=".", results_dir=".")
    with pytest.raises(ValueError, match="plain file name"):
        Unit(key=f"..{os.sep}a", config_id="a", scale="ci", kind="nets", part="all", baselines_dir=".", results_dir=".")


def test_a_helper_takes_from_the_back_and_records_errors(tmp_path):
    queue = StudyQueue.create(tmp_path / "q", _units("abcd", tmp_path))
    assert queue.claim("a")  # the session's

    def compute(unit):
        if unit.key == "c":
            raise RuntimeError("broken c")
        return unit.key * 2

    order = []
    assert run_helper(queue.folder, compute=lambda u: order.append(u.key) or compute(u)) == 2
    assert order == ["d", "c", "b"]
    assert queue.result("d")["value"] == "dd" and "broken c" in queue.result("c")["error"]
    assert queue.result("a") is None
    other = StudyQueue.create(tmp_path / "q2", _units("ab", tmp_path))
    assert run_helper(other.folder, compute=compute, parent=-1) == 0  # its session is gone: nothing taken


def test_without_helpers_everything_is_computed_here():
    assert Helpers().take("a", lambda: "here") == "here" and Helpers().procs == []


def _take_all(helpers, keys):
    said = []
    values = {k: helpers.take(k, lambda k=k: ("here", k), say=said.append) for k in keys}
    helpers.stop()
    return values, said


def test_each_unit_is_computed_once_by_session_or_helper(tmp_path, importable_tests):
    keys = list("abcdef")
    helpers = Helpers.start(tmp_path / "q", _units(keys, tmp_path), 1, log_dir=tmp_path,
                            compute="tests.parallel_units:echo")
    deadline = time.monotonic() + 120
    while helpers.queue.claimant(keys[-1]) is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the helper has started (importing torch) and taken the last unit
    values, said = _take_all(helpers, keys)
    assert {k: v[1] for k, v in values.items()} == {k: k for k in keys}
    by_helper = [k for k, v in values.items() if v[0] == "helper"]
    assert by_helper and by_helper == keys[len(keys) - len(by_helper):], values  # a suffix: from the back
    assert values["a"][0] == "here", (values, (tmp_path / "helper-0.log").read_text())
    assert len(said) == len(by_helper) and all("from helper process" in s for s in said)


@pytest.mark.parametrize("compute, what", [("fail_on_b", "failed (RuntimeError: unit b is broken)"),
                                           ("die_on_b", "stopped without a result")])
def test_a_failed_or_dead_helper_leaves_the_unit_to_the_session(tmp_path, importable_tests, compute, what):
    helpers = Helpers.start(tmp_path / "q", _units("ab", tmp_path), 1, log_dir=tmp_path,
                            compute=f"tests.parallel_units:{compute}")
    deadline = time.monotonic() + 60
    while helpers.queue.claimant("b") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    values, said = _take_all(helpers, ["b"])
    assert values == {"b": ("here", "b")}
    assert len(said) == 1 and what in said[0], said
    assert helpers.failed() == ([(0, 3)] if compute == "die_on_b" else [])


def test_a_helper_runs_one_thread(tmp_path, importable_tests):
    helpers = Helpers.start(tmp_path / "q", _units("a", tmp_path), 1, log_dir=tmp_path,
                            compute="tests.parallel_units:threads")
    deadline = time.monotonic() + 60
    while helpers.queue.result("a") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    values, _ = _take_all(helpers, ["a"])
    assert values["a"] == ("helper", 1, "1"), (values, (tmp_path / "helper-0.log").read_text())


@pytest.fixture(scope="module")
def shipped_ci_net(tmp_path_factory):
    cache, root = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("baselines")
    config = SCALES["ci"].configs[0].replace(epochs=2, n_train=256, n_test=64)
    ship(train(config, cache_dir=cache), root, "ci", recipe="seed", commit="test", converged=converged)
    return config, root


def test_a_study_from_a_helper_is_the_study_here(shipped_ci_net, tmp_path):
    config, root = shipped_ci_net
    unit = Unit(key=unit_key("nets", config.config_id), config_id=config.config_id, scale="ci", kind="nets",
                part="rest", baselines_dir=str(root), results_dir=str(tmp_path / "helper"))
    helpers = Helpers.start(tmp_path / "q", [unit], 1, log_dir=tmp_path)
    deadline = time.monotonic() + 120
    while helpers.queue.result(unit.key) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    part, flat = helpers.take(unit.key, lambda: pytest.fail("the helper did not take its unit: "
                                                            + (tmp_path / "helper-0.log").read_text()))
    helpers.stop()
    net = load_reference(config.config_id, root, "ci")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the helper ran
    try:
        here_part, here_flat = study_rest(net.config, SCALES["ci"], net=net, data=_data(net.config),
                                          results_dir=tmp_path / "here")
    finally:
        torch.set_num_threads(threads)
    assert flat == here_flat and part["pairs"] == here_part["pairs"]
    assert part["curvature"] == here_part["curvature"] and "pca" in part


def test_compute_unit_names_a_net_that_is_not_shipped(tmp_path):
    unit = Unit(key="x", config_id="resnet20-bs128-s0", scale="ci", kind="nets", part="all",
                baselines_dir=str(tmp_path), results_dir=str(tmp_path))
    with pytest.raises(Exception, match="no shipped net 'resnet20-bs128-s0'"):
        compute_unit(unit)


def _data(config):
    from lossbench.data import load_dataset

    return load_dataset(config).to(torch.float32)


class _Options:
    def __init__(self, **values):
        self.values = values

    def getoption(self, name):
        return self.values[name]


@pytest.mark.parametrize("jobs, speed, expected", [("auto", False, "cores"), ("auto", True, 1), ("3", False, 3),
                                                   ("1", True, 1)])
def test_jobs_option(jobs, speed, expected):
    from lossbench.pytest_plugin import _cores, _jobs

    got = _jobs(_Options(lossbench_jobs=jobs, lossbench_speed=speed))
    assert got == (_cores() if expected == "cores" else expected)


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_a_bad_jobs_option_is_refused(bad):
    from lossbench.pytest_plugin import _jobs

    with pytest.raises(pytest.UsageError, match=f"--lossbench-jobs '{bad}': a process count >= 1, or auto"):
        _jobs(_Options(lossbench_jobs=bad, lossbench_speed=False))


def _doc(sha="w", pairs=3, drop=()):
    names = ("curv_max", "loss_center", "sharpness_0.5")
    metrics = {f"{n}{pair_suffix(k)}": {"value": 10.0 * k + i, "tol": 0.1}
               for k in range(pairs) for i, n in enumerate(names)}
    metrics |= {"eig_max": {"value": 1.0, "tol": 0.1}, "line_filter_curv/p1": {"value": 2.0, "tol": 0.1},
                "line_filter_curv": {"value": 2.0, "tol": 0.1}}
    return {"source": {"weights_sha256": sha}, "metrics": {k: v for k, v in metrics.items() if k not in drop}}


def test_stored_pairs_come_only_from_a_baseline_of_the_same_weights():
    scale = dataclasses.replace(SCALES["small"], dir_pairs=3, pair_check=1)
    assert stored_pairs(_doc(), weights_sha256="w", scale=scale) == {
        1: {"curv_max": 10.0, "loss_center": 11.0, "sharpness_0.5": 12.0},
        2: {"curv_max": 20.0, "loss_center": 21.0, "sharpness_0.5": 22.0}}
    assert stored_pairs(_doc(), weights_sha256="other", scale=scale) == {}
    assert stored_pairs(_doc(), weights_sha256="w", scale=dataclasses.replace(scale, pair_check=None)) == {}
    assert list(stored_pairs(_doc(), weights_sha256="w", scale=dataclasses.replace(scale, pair_check=2))) == [2]
    assert list(stored_pairs(_doc(drop=("loss_center/p2",)), weights_sha256="w", scale=scale)) == [1]
    assert stored_pairs({}, weights_sha256="w", scale=scale) == {}


def test_a_stored_pair_reaches_the_claims_but_not_the_check(shipped_ci_net, tmp_path):
    config, root = shipped_ci_net
    net = load_reference(config.config_id, root, "ci")
    scale = dataclasses.replace(SCALES["ci"], dir_pairs=2, pair_check=1)
    computed, flat = study_rest(net.config, scale, net=net, data=_data(net.config), results_dir=tmp_path / "a")
    assert computed["stored_pairs"] == [] and any(k.endswith("/p1") for k in flat)
    given = {1: {name: -1.0 for name in computed["pairs"][0]}}
    part, flat_stored = study_rest(net.config, scale, net=net, data=_data(net.config), results_dir=tmp_path / "b",
                                   stored=given)
    assert part["stored_pairs"] == [1] and part["pairs"] == [given[1]]
    assert not any(k.endswith("/p1") for k in flat_stored)
    assert flat_stored == {k: v for k, v in flat.items() if not k.endswith("/p1")}
    assert not (tmp_path / "b" / config.config_id / "surface-2d-p1.h5").exists()


PROBE = '''
import os

import torch


def test_where_it_runs():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if os.path.basename(os.path.dirname(__file__)) == "benchmarks":
        assert worker is None, "a benchmark ran in an xdist worker"
    else:
        assert worker, "the tests did not run in xdist workers"
        assert torch.get_num_threads() == max(1, cores // 2)
'''


def test_the_suites_tests_run_on_every_core_and_its_benchmarks_in_one_process(pytester, monkeypatch):
    """As lossbench's pyproject asks (``-n auto``; here 2 workers): the tests in xdist workers with one
    share of the cores each, a run of the benchmarks folder in one process (the plugin turns xdist off)."""
    pytest.importorskip("xdist")
    for name in [k for k in os.environ if k.startswith("PYTEST_XDIST_")]:  # this test's own worker's
        monkeypatch.delenv(name)
    pytester.makeini("[pytest]\nlossbench_suite = true\naddopts = -n 2 --dist loadfile -p no:cacheprovider\n")
    for folder in ("tests", "benchmarks"):
        (pytester.path / folder).mkdir()
        (pytester.path / folder / f"test_{folder}_probe.py").write_text(PROBE)
    pytester.runpytest_subprocess("tests").assert_outcomes(passed=1)
    pytester.runpytest_subprocess("benchmarks").assert_outcomes(passed=1)
