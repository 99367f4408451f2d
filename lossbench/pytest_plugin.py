"""pytest hooks, options and thin fixtures: lossbench's own suite, and ``landscape_regression`` for
anyone's.

Installed as a pytest plugin (the ``pytest11`` entry point ``lossbench``): ``pip install lossbench``
gives every project

* the fixture ``landscape_regression``: ``landscape_regression.check(model, data, ...)`` puts a model's
  loss landscape under regression test (:mod:`lossbench.regression`), files beside the test module as
  pytest-regressions keeps them; ``--lossbench-regen`` rewrites them;
* nothing else: the reproduction's hooks below (markers, the matrix parametrisation, the default
  scale, the baselines' session summary) act only where the ini option ``lossbench_suite`` is true
  (lossbench's own ``pyproject.toml``), and torch is imported only when a fixture is used.

For lossbench's suite:

* ``--lossbench-scale/-device/-cache-dir/-data-dir`` (shared with the CLI through
  :func:`lossbench.config.add_run_options`), ``--lossbench-dtype``, ``--lossbench-regen``,
  ``--lossbench-regen-all``, ``--lossbench-jobs`` (helper processes for the shipped nets' studies, a test
  marked ``study`` takes its net's from :mod:`lossbench.parallel`).
* A test that takes ``run_config`` runs once per config of the scale's matrix
  (architecture x shortcut x batch size), with ids like ``resnet56-noshort-bs128-s0``.
* Session fixtures ``trained`` (the cached trainer), ``lossbench_data`` and ``lossbench_baseline``
  (a checker that compares metrics with ``baselines/<scale>/<config_id>.json``).
* The session ends with "baselines: N passed, N failed, N created, N updated, N unused".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # torch is imported when the fixture is used, not when pytest loads the plugin
    from torch import nn

from .config import add_dtype_option, add_run_options

MARKERS = {
    "gpu": "needs a CUDA device; skipped (with a reason) when none is available",
    "slow": "minutes or more on a CPU; deselect with -m 'not slow'",
    "paper": "needs the paper scale (CIFAR-10, GPU hours)",
    "study": "study(kind='nets'|'seed-nets', part='rest'|'all', param='run_config', subdir='', option=None): "
             "the study of the test's shipped net may run in a helper process (--lossbench-jobs)",
}
_STUDY_KWARGS = {"kind", "part", "param", "subdir", "option"}

_STATS_KEY = pytest.StashKey[dict[str, Any]]()
_CONFIGS_KEY = pytest.StashKey[set]()
_HELPERS_KEY = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lossbench")
    add_run_options(group.addoption, prefix="lossbench-")
    add_dtype_option(group.addoption, prefix="lossbench-")
    group.addoption("--lossbench-regen", action="store_true",
                    help="rewrite baselines that differ (tolerances kept); the tests still fail, so it is never silent")
    group.addoption("--lossbench-regen-all", action="store_true",
                    help="rewrite baselines that differ and pass: for a deliberate re-baseline commit")
    group.addoption("--lossbench-baselines-dir", default=None,
                    help="root of the baselines (default <rootdir>/baselines)")
    group.addoption("--lossbench-all-seeds", action="store_true",
                    help="also recompute every shipped training seed's metrics (seeds 1 and 2 of each net, from "
                         "baselines/<scale>/seed-nets/) against the values the claims use; about twice the main job")
    group.addoption("--lossbench-all-pairs", action="store_true",
                    help="recompute every direction pair of each net (the small scale's main job recomputes the "
                         "first and takes the others from the baseline, measured on the same weights)")
    group.addoption("--lossbench-jobs", default="auto", metavar="N",
                    help="processes for the shipped nets' studies: N-1 single-threaded helpers beside this session, "
                         "which then runs one thread; auto (default): one per core on a CPU, none with "
                         "--lossbench-speed (timings need quiet cores); 1: none")
    group.addoption("--lossbench-speed", action="store_true",
                    help="also run the grid-speed benchmarks (benchmarks/test_grid_speed.py); off in the main job, "
                         "on whenever -k names grid_speed")
    parser.addini("lossbench_suite", type="bool", default=False,
                  help="this project is lossbench's own suite: turn on its markers, matrix and baselines summary")


def _suite(config: pytest.Config) -> bool:
    """Whether this session is lossbench's own suite (ini ``lossbench_suite``), not a user's project."""
    return bool(config.getini("lossbench_suite"))


def _in_benchmarks(config: pytest.Config) -> list[bool]:
    """For each path pytest was given (``.`` when none), whether it lies under ``<rootdir>/benchmarks``."""
    bench = (Path(config.rootpath) / "benchmarks").resolve()
    paths = [Path(a.split("::")[0]) for a in config.args] or [Path(".")]
    paths = [(Path(config.invocation_params.dir) / p).resolve() for p in paths]
    return [p == bench or bench in p.parents for p in paths]


def _default_scale(config: pytest.Config) -> str:
    """``small`` when every path pytest was given lies under ``<rootdir>/benchmarks`` (the reproduction
    on the shipped reference nets), else ``ci`` (the tests: the retrained matrix)."""
    return "small" if all(_in_benchmarks(config)) else "ci"


@pytest.hookimpl(hookwrapper=True)
def pytest_cmdline_main(config: pytest.Config):
    """lossbench's suite runs its tests on every core (``-n auto`` in its pyproject) but its benchmarks
    in one process: pytest-benchmark times nothing under xdist, and the main job's helper processes
    already use the other cores. So a run of anything under ``<rootdir>/benchmarks`` turns xdist off
    before xdist reads its options."""
    if _suite(config) and any(_in_benchmarks(config)):
        config.option.numprocesses = 0
        config.option.dist = "no"
    yield


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _suite(config):
        # one of several xdist workers on this machine's cores: one share of them each, not all of them
        import torch

        torch.set_num_threads(max(1, _cores() // int(workerinput.get("workercount", 1))))
    if config.getoption("lossbench_scale", None) is None:
        config.option.lossbench_scale = _default_scale(config)
    if _suite(config):
        for name, text in MARKERS.items():
            config.addinivalue_line("markers", f"{name}: {text}")
    config.stash[_STATS_KEY] = {"passed": 0, "failed": 0, "created": 0, "updated": 0, "used": set(),
                                "spread_tier": [], "unused": [], "complete": False,
                                "landscapes": {"passed": 0, "failed": 0, "created": 0, "updated": 0}}


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _suite(item.config):
        return
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs CUDA: torch.cuda.is_available() is False on this machine")
    if item.get_closest_marker("paper") is not None and item.config.getoption("lossbench_scale") != "paper":
        pytest.skip("paper-scale test: run with --lossbench-scale paper (CIFAR-10, a GPU)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "run_config" in metafunc.fixturenames and _suite(metafunc.config):
        from .config import get_scale

        configs = get_scale(metafunc.config.getoption("lossbench_scale")).all_configs
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
def lossbench_dtype(pytestconfig: pytest.Config):
    """``--lossbench-dtype`` as a torch dtype: what the nets and the data are evaluated in."""
    import torch

    return getattr(torch, pytestconfig.getoption("lossbench_dtype"))


@pytest.fixture(scope="session")
def lossbench_dataset(pytestconfig: pytest.Config, lossbench_dtype):
    """``get(config)``: the data set of a config as tensors, in ``--lossbench-dtype``."""
    from .data import load_dataset

    def get(config):
        return load_dataset(config, data_dir=pytestconfig.getoption("lossbench_data_dir")).to(lossbench_dtype)

    return get


@pytest.fixture(scope="session")
def lossbench_cache_dir(pytestconfig: pytest.Config) -> Path:
    """``--lossbench-cache-dir``, else a folder in pytest's cache (kept between runs, not in git), else
    (cache plugin disabled) :func:`lossbench.train.default_cache_dir`."""
    chosen = pytestconfig.getoption("lossbench_cache_dir")
    if chosen:
        return Path(chosen)
    if getattr(pytestconfig, "cache", None) is None:  # -p no:cacheprovider: the library's own default cache
        from .train import default_cache_dir

        return default_cache_dir()
    return Path(pytestconfig.cache.mkdir("lossbench"))


@pytest.fixture(scope="session")
def lossbench_results_dir(pytestconfig: pytest.Config, lossbench_scale) -> Path:
    """Where this session's surfaces go: ``<rootdir>/.benchmarks/surfaces/<scale>`` (the report reads them)."""
    path = _surfaces_dir(pytestconfig)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _surfaces_dir(config: pytest.Config) -> Path:
    return Path(config.rootpath) / ".benchmarks" / "surfaces" / config.getoption("lossbench_scale")


@pytest.fixture(scope="session")
def lossbench_baselines_dir(pytestconfig: pytest.Config) -> Path:
    return _baselines_dir(pytestconfig)


def _baselines_dir(config: pytest.Config) -> Path:
    chosen = config.getoption("lossbench_baselines_dir")
    return Path(chosen) if chosen else Path(config.rootpath) / "baselines"


@pytest.fixture(scope="session")
def lossbench_net(lossbench_scale, lossbench_device, lossbench_cache_dir, lossbench_baselines_dir, pytestconfig,
                  lossbench_dtype):
    """``get(config)``: the net of a config of the scale: the shipped reference net (sha256-verified)
    where the scale ships them, else the cached training result (trained on first use); its model in
    ``--lossbench-dtype`` (the hashes are of the float32 weights as stored)."""
    return _nets(lossbench_scale, lossbench_device, lossbench_cache_dir, lossbench_baselines_dir, pytestconfig,
                 lossbench_dtype)


def _nets(lossbench_scale, lossbench_device, lossbench_cache_dir, lossbench_baselines_dir, pytestconfig, dtype):
    get = _float32_nets(lossbench_scale, lossbench_device, lossbench_cache_dir, lossbench_baselines_dir, pytestconfig)

    def get_in_dtype(config):
        net = get(config)
        net.model.to(dtype)  # in place: the same module the cache and the reference net hold
        return net

    return get_in_dtype


def _float32_nets(lossbench_scale, lossbench_device, lossbench_cache_dir, lossbench_baselines_dir, pytestconfig):
    from .errors import CheckpointError
    from .reference_nets import load_reference, shipped_ids
    from .train import train, train_many

    pretrained = []

    def get(config):
        if lossbench_scale.shipped:
            if config.config_id not in shipped_ids(lossbench_baselines_dir, lossbench_scale.name):
                pytest.skip(f"{config.config_id} is not shipped in baselines/{lossbench_scale.name}/nets yet: train it "
                            f"(python -m lossbench train --scale {lossbench_scale.name} --all --only {config.config_id}) "
                            f"and ship it (python -m lossbench ship --scale {lossbench_scale.name})")
            net = load_reference(config.config_id, lossbench_baselines_dir, lossbench_scale.name,
                                 device=lossbench_device)
            if net.config != config:
                raise CheckpointError(
                    f"the recipe of {config.config_id} changed since it was shipped ({net.config.config_hash[:12]} "
                    f"shipped, {config.config_hash[:12]} now): retrain it and run `python -m lossbench ship`")
            return net
        data_dir = pytestconfig.getoption("lossbench_data_dir")
        if not pretrained:
            # the first net asked for: train every config this session's tests use now, one process per
            # core, each single-threaded (the weights do not depend on it); later calls find them cached
            pretrained.append(True)
            wanted = pytestconfig.stash.get(_CONFIGS_KEY, set()) | {config.config_id}
            train_many([c for c in lossbench_scale.all_configs if c.config_id in wanted] or [config],
                       cache_dir=lossbench_cache_dir, device=str(lossbench_device), data_dir=data_dir)
        return train(config, device=lossbench_device, cache_dir=lossbench_cache_dir, data_dir=data_dir)

    return get


@pytest.fixture(scope="session")
def trained(run_config, lossbench_net):
    """The net of ``run_config``: shipped (``small``) or trained and cached (``ci``)."""
    return lossbench_net(run_config)


@pytest.fixture(scope="session")
def lossbench_data(run_config, lossbench_dataset):
    """The data set of ``run_config`` (as tensors, in ``--lossbench-dtype``)."""
    return lossbench_dataset(run_config)


@pytest.fixture(scope="session")
def lossbench_progress(pytestconfig: pytest.Config):
    """``say(message)``: one line on the terminal now, past output capture, so a long run shows each
    finished net and step; silent with ``-q -q`` or without a terminal reporter."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(message: str) -> None:
        if reporter is None or pytestconfig.get_verbosity() < -1:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"[lossbench] {message}")
        else:
            reporter.write_line(f"[lossbench] {message}")

    return say


@pytest.fixture(scope="session")
def lossbench_selected_configs(pytestconfig: pytest.Config) -> set[str]:
    """The config ids of the nets this session's collected tests measure (after ``-k``/deselection)."""
    return set(pytestconfig.stash.get(_CONFIGS_KEY, set()))


@pytest.fixture(scope="session")
def lossbench_records() -> dict[str, Any]:
    """config_id -> the study record of every net measured in this session (for the claims), plus
    ``eig_maps``, ``interpolations``, ``connections`` (config_id -> the stored curves' barriers) and
    ``spectra`` (config_id -> the stored spectrum's summary with its seed spread and uncertainties)."""
    return {"nets": {}, "eig_maps": {}, "interpolations": {}, "connections": {}, "spectra": {}}


def _counted(stats: dict[str, Any], path: Path, run: Callable[[], Any], *, regen_all: bool):
    """Run one baseline comparison of ``path`` and count it in the session summary: a malformed file
    counts as failed; a regeneration is never silent (--lossbench-regen-all passes but counts as
    updated); anything but "passed" raises :class:`BaselineMismatch` with the comparison's table."""
    __tracebackhide__ = True
    from .baselines import BaselineFileError, BaselineMismatch

    stats["used"].add(path.resolve())
    try:
        outcome = run()
    except BaselineFileError as exc:
        stats["failed"] += 1
        raise BaselineMismatch(str(exc)) from None
    stats["updated" if regen_all and outcome.message.startswith("rewrote") else outcome.status] += 1
    if outcome.status != "passed":
        raise BaselineMismatch(outcome.message)
    return outcome


@pytest.fixture(scope="session")
def lossbench_baseline(pytestconfig: pytest.Config, lossbench_scale, lossbench_baselines_dir, lossbench_device):
    """``check(config_id, metrics, *, config_hash=None, weights_sha256=None, extra=None,
    not_recomputed=())``: compare with the stored baseline at its recompute tolerance (or, for retrained
    weights that differ from the baseline's, at its seed spread); fails with the whole table.
    ``not_recomputed``: stored metrics deliberately not computed (:func:`lossbench.baselines.compare`)."""
    from .baselines import check, provenance
    from .train import platform_id

    stats = pytestconfig.stash[_STATS_KEY]
    regen = pytestconfig.getoption("lossbench_regen")
    regen_all = pytestconfig.getoption("lossbench_regen_all")

    def _check(config_id: str, metrics: dict[str, float], extra: dict[str, Any] | None = None, *,
               config_hash: str | None = None, weights_sha256: str | None = None, not_recomputed=()):
        __tracebackhide__ = True
        path = lossbench_baselines_dir / lossbench_scale.name / f"{config_id}.json"

        def run():
            outcome = check(path, metrics, config_id=config_id, scale=lossbench_scale.name,
                            source=provenance(str(lossbench_device)), config_hash=config_hash,
                            weights_sha256=weights_sha256, platform=platform_id(), regen=regen,
                            regen_all=regen_all, extra=extra, not_recomputed=not_recomputed)
            if outcome.tier != "tol":
                stats["spread_tier"].append(config_id)
            return outcome

        return _counted(stats, path, run, regen_all=regen_all)

    return _check


@pytest.fixture(scope="session")
def lossbench_baseline_doc(lossbench_scale, lossbench_baselines_dir):
    """``get(name)``: the stored baseline ``baselines/<scale>/<name>.json`` as a dict ({} when there is
    none yet: the check itself creates it and fails), for what a check does not compare: the seed spread
    and the uncertainties the claims use."""
    from .baselines import load_baseline

    def get(name: str) -> dict[str, Any]:
        path = lossbench_baselines_dir / lossbench_scale.name / f"{name}.json"
        return load_baseline(path) if path.exists() else {}

    return get


@pytest.fixture
def lossbench_verdicts(pytestconfig: pytest.Config, lossbench_scale, lossbench_baselines_dir):
    """``check(verdicts, converged, numbers)``: the claims' verdicts against
    ``baselines/<scale>/claims.json``, counted in the session summary like every baseline file."""
    from .baselines import check_verdicts, provenance

    stats = pytestconfig.stash[_STATS_KEY]
    regen = pytestconfig.getoption("lossbench_regen")
    regen_all = pytestconfig.getoption("lossbench_regen_all")

    def _check(verdicts: dict[str, str], converged: dict[str, bool], numbers: dict[str, Any] | None = None):
        __tracebackhide__ = True
        path = lossbench_baselines_dir / lossbench_scale.name / "claims.json"
        return _counted(stats, path, lambda: check_verdicts(path, verdicts, converged, source=provenance(),
                                                            numbers=numbers, regen=regen, regen_all=regen_all),
                        regen_all=regen_all)

    return _check


class LandscapeRegression:
    """What the ``landscape_regression`` fixture gives a test: :meth:`check`."""

    def __init__(self, request: pytest.FixtureRequest, stats: dict[str, Any], regen: bool) -> None:
        self._request, self._stats, self._regen = request, stats, regen
        path = Path(request.node.path)
        self.folder = path.parent / path.stem  # pytest-regressions' layout: beside the test module
        self._names: set[str] = set()

    def check(self, model: nn.Module, data: Any, *, loss: Callable | None = None, grid: int = 11, span: float = 1.0, directions: int = 1,
              hessian: bool = True, basename: str | None = None, pin_weights: bool = False) -> None:
        """Compute the loss landscape of ``model`` on ``data`` and compare it with the stored one.

        Args:
            model: any ``nn.Module`` (on the CPU or a GPU; its weights are restored afterwards).
            data: an ``(inputs, targets)`` pair of tensors, a list of such batches, or a DataLoader.
            loss: a batch-mean loss; default cross-entropy for integer class labels (required for float
                targets, e.g. ``torch.nn.MSELoss()``).
            grid: points per axis (odd); span: the axis covers [-span, span] in units of the filter-normalised
                direction; directions: 1 (a line) or 2 (a grid x grid surface).
            hessian: also the Hessian's largest eigenvalue and trace at the weights.
            basename: the files' name (default: the test's name); one test may check several landscapes
                with different basenames.
            pin_weights: store the model's weights as ``<basename>.pt`` beside the baseline on the first run
                and load them into ``model`` on every later one: the test then checks the landscape of fixed
                weights, on any machine, whatever training inside the test gives there.

        The first run writes ``<test module folder>/<module stem>/<basename>.json`` and ``.h5`` and fails
        ("created: review and commit"); later runs compare every metric at its measured tolerance and fail
        with a table of the metrics that moved; ``--lossbench-regen`` rewrites the files (and fails).
        """
        __tracebackhide__ = True
        import re

        from .regression import LandscapeSpec, check_landscape

        name = basename or re.sub(r"[^\w.-]+", "_", self._request.node.name).strip("_")
        if name in self._names:
            raise ValueError(f"landscape {name!r} is checked twice in this test: give each check its own basename=")
        self._names.add(name)
        spec = LandscapeSpec(grid=grid, span=span, directions=directions, hessian=hessian)
        outcome = check_landscape(model, data, folder=self.folder, name=name, loss=loss, spec=spec, regen=self._regen,
                                  pin_weights=pin_weights)
        self._stats["landscapes"][outcome.status] += 1
        if outcome.status == "created":
            pytest.fail(f"created: {outcome.path} (and {name}.h5): review and commit", pytrace=False)
        if outcome.status == "updated":
            pytest.fail(f"regenerated: {outcome.message}", pytrace=False)
        if outcome.status == "failed":
            raise LandscapeMismatch(f"the loss landscape moved:\n{outcome.message}\n"
                                    f"(the obtained files are {name}.obtained.json and .h5 beside it; "
                                    "run pytest --lossbench-regen to accept them)")


class LandscapeMismatch(AssertionError):
    """A landscape's metrics moved beyond their tolerances; the message is the whole table."""


@pytest.fixture
def landscape_regression(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> LandscapeRegression:
    """A model's loss landscape as a regression test: ``landscape_regression.check(model, data)`` (see
    :meth:`LandscapeRegression.check` and the documentation's regression fixture page)."""
    return LandscapeRegression(request, pytestconfig.stash[_STATS_KEY], pytestconfig.getoption("lossbench_regen"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember which configs the selected tests use (the trainer trains them together), and start the
    helper processes of the nets' studies."""
    ids = set()
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "run_config" in params:
            ids.add(params["run_config"].config_id)
    session.config.stash[_CONFIGS_KEY] = ids
    if _suite(session.config):
        _start_helpers(session)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _jobs(config: pytest.Config) -> int:
    """``--lossbench-jobs`` as a process count (``auto``: the usable cores; none with --lossbench-speed)."""
    value = str(config.getoption("lossbench_jobs"))
    if value == "auto":
        return 1 if config.getoption("lossbench_speed") else _cores()
    if not value.isdigit() or int(value) < 1:
        raise pytest.UsageError(f"--lossbench-jobs {value!r}: a process count >= 1, or auto")
    return int(value)


def _study_units(session: pytest.Session) -> list:
    """One :class:`~lossbench.parallel.Unit` per shipped net whose study a selected test marked ``study``
    makes, in test order."""
    from .parallel import Unit, unit_key

    config = session.config
    baselines = _baselines_dir(config)
    scale = config.getoption("lossbench_scale")
    units: dict[str, Unit] = {}
    for item in session.items:
        marker = item.get_closest_marker("study")
        if marker is None:
            continue
        unknown = set(marker.kwargs) - _STUDY_KWARGS
        if unknown or marker.args:
            raise pytest.UsageError(f"{item.nodeid}: study marker takes keywords {sorted(_STUDY_KWARGS)}, not "
                                    f"{sorted(unknown) or list(marker.args)}")
        kw = marker.kwargs
        if kw.get("option") and not config.getoption(kw["option"]):
            continue
        run_config = item.callspec.params[kw.get("param", "run_config")]
        kind = kw.get("kind", "nets")
        key = unit_key(kind, run_config.config_id)
        units.setdefault(key, Unit(key=key, config_id=run_config.config_id, scale=scale, kind=kind,
                                   part=kw.get("part", "rest"), baselines_dir=str(baselines),
                                   results_dir=str(_surfaces_dir(config) / kw.get("subdir", "")),
                                   data_dir=config.getoption("lossbench_data_dir"),
                                   all_pairs=config.getoption("lossbench_all_pairs")))
    return list(units.values())


def _start_helpers(session: pytest.Session) -> None:
    """Start ``--lossbench-jobs`` - 1 helpers for the studies of shipped nets on a CPU in float32 (the
    baselines' tolerances include one thread); nothing for fewer than two studies, a collect-only run
    or an xdist worker."""
    import tempfile

    from .config import get_scale
    from .parallel import Helpers

    config = session.config
    if (config.option.collectonly or hasattr(config, "workerinput") or not session.items
            or not get_scale(config.getoption("lossbench_scale")).shipped
            or str(config.getoption("lossbench_device")) != "cpu" or config.getoption("lossbench_dtype") != "float32"):
        return
    jobs = _jobs(config)
    units = _study_units(session)
    count = min(jobs, len(units)) - 1
    if count < 1:
        return
    import torch

    torch.set_num_threads(max(1, _cores() // (count + 1)))
    jobs_dir = Path(config.rootpath) / ".benchmarks" / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="queue-", dir=jobs_dir)
    config.stash[_HELPERS_KEY] = Helpers.start(folder, units, count, log_dir=jobs_dir)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and config.get_verbosity() >= 0:
        reporter.write_line(f"lossbench: {len(units)} nets' studies shared with {count} helper process"
                            f"{'es' if count > 1 else ''} (one thread each, as this session now; logs in {jobs_dir}; "
                            "--lossbench-jobs 1: none)")


@pytest.fixture(scope="session")
def lossbench_helpers(pytestconfig: pytest.Config):
    """:class:`lossbench.parallel.Helpers`: ``take(key, here, say=...)`` gives a study unit's value,
    from a helper process or computed ``here()``; without helpers, always ``here()``."""
    from .parallel import Helpers

    return pytestconfig.stash.get(_HELPERS_KEY, None) or Helpers()


def pytest_deselected(items) -> None:
    if items:
        items[0].config.stash[_STATS_KEY]["deselected"] = True


_COUNTS = ("passed", "failed", "created", "updated")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    helpers = config.stash.get(_HELPERS_KEY, None)
    if helpers is not None:
        import shutil

        helpers.stop()
        shutil.rmtree(helpers.queue.folder, ignore_errors=True)
    stats = config.stash.get(_STATS_KEY, None)
    if stats is None:
        return
    if hasattr(config, "workerinput"):  # xdist worker: hand the counts to the controller
        config.workeroutput["lossbench_baselines"] = {  # type: ignore[attr-defined]
            **{k: stats[k] for k in _COUNTS}, "used": sorted(str(p) for p in stats["used"]),
            "spread_tier": stats["spread_tier"], "landscapes": stats["landscapes"]}
        return
    _find_unused(config, stats)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist controller: add a finished worker's baseline counts to the session's."""
    data = getattr(node, "workeroutput", {}).get("lossbench_baselines")
    stats = node.config.stash.get(_STATS_KEY, None)
    if not data or stats is None:
        return
    for k in _COUNTS:
        stats[k] += data[k]
    stats["used"].update(Path(p) for p in data["used"])
    stats["spread_tier"].extend(data["spread_tier"])
    for k, v in data.get("landscapes", {}).items():
        stats["landscapes"][k] += v


def _find_unused(config: pytest.Config, stats: dict[str, Any]) -> None:
    """Baseline files in every folder this session used one from (the scale's folder, and ``eigmap/``
    when an eigen-ratio map was checked), that it did not use: a plain ``pytest`` never checks the
    eigen-map summaries, so it does not call them unused. Counted only when nothing was deselected
    and the session was not stopped early."""
    stats["complete"] = not stats.get("deselected") and not config.getoption("exitfirst", False) \
        and not config.getoption("lossbench_regen", False)
    stored = set()
    for folder in {p.parent for p in stats["used"]}:
        stored |= {p.resolve() for p in folder.glob("*.json") if not p.name.endswith(".obtained.json")}
    stats["unused"] = sorted(stored - stats["used"])


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # xdist workers print nothing; their counts arrive via the controller
        return
    helpers = config.stash.get(_HELPERS_KEY, None)
    for i, status in helpers.failed() if helpers is not None else ():
        terminalreporter.write_line(f"lossbench: helper process {i} ended with exit status {status} (its log: "
                                    f".benchmarks/jobs/helper-{i}.log); the session computed its units itself")
    stats = config.stash.get(_STATS_KEY, None)
    if stats and any(stats["landscapes"].values()):
        n = stats["landscapes"]
        terminalreporter.write_line(f"lossbench landscapes: {n['passed']} passed, {n['failed']} failed, "
                                    f"{n['created']} created, {n['updated']} updated")
    if not stats or not stats["used"]:
        return
    terminalreporter.write_line(
        f"baselines: {stats['passed']} passed, {stats['failed']} failed, {stats['created']} created, "
        f"{stats['updated']} updated, " + (f"{len(stats['unused'])} unused" if stats["complete"] else "unused not counted (partial run)")
    )
    for path in stats["unused"] if stats["complete"] else ():
        terminalreporter.write_line(f"  unused: {path}")
    device, dtype = config.getoption("lossbench_device"), config.getoption("lossbench_dtype")
    if str(device).startswith("cuda") or dtype != "float32":
        terminalreporter.write_line(
            f"baselines: checked on {device} in {'IEEE float32 (TF32 off)' if dtype == 'float32' else dtype} at the "
            "CPU's tolerances (they include a float64 recompute); TF32 and bf16 (the fast engine's --precision "
            "opt-ins) are outside the baselines by design")
    if stats["spread_tier"]:
        from .baselines import SPREAD_REASON

        terminalreporter.write_line(
            f"baselines: tier: spread — {SPREAD_REASON}: {', '.join(sorted(set(stats['spread_tier'])))}"
        )


@pytest.hookimpl(optionalhook=True)  # only called when pytest-benchmark is active
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Record torch, CUDA and the card with every saved benchmark run."""
    import torch

    machine_info["torch"] = str(torch.__version__)
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    machine_info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
