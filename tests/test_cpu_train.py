"""benchmarks/cpu_train.py, the CPU training queue: its jobs file, its rule for what may start before a
deadline, and its test for a net that is shipped already (the queue runs for hours: these are checked
without training)."""

import datetime as dt
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from lossbench.config import get_scale

_spec = importlib.util.spec_from_file_location("cpu_train", Path(__file__).parent.parent / "benchmarks" / "cpu_train.py")
cpu_train = importlib.util.module_from_spec(_spec)
sys.modules["cpu_train"] = cpu_train  # its dataclass looks its module up there
_spec.loader.exec_module(cpu_train)
Job = cpu_train.Job
Run = cpu_train.Run


def test_the_jobs_file_reads_in_order_and_a_bad_line_is_named():
    jobs = cpu_train.parse_jobs("# comment\nresnet20-bs128-s0:1 10  # why\n\nresnet56-bs128-s0:2 20.5\n")
    assert jobs == [Job("resnet20-bs128-s0", 1, 10.0), Job("resnet56-bs128-s0", 2, 20.5)]
    with pytest.raises(ValueError, match=r"line 2 'resnet20-bs128-s0 10': expected 'CONFIG_ID:SEED MINUTES'"):
        cpu_train.parse_jobs("resnet20-bs128-s0:1 10\nresnet20-bs128-s0 10")


@pytest.mark.parametrize("name", ["cpu_jobs-small.txt", "cpu_jobs-clip5.txt"])
def test_the_shipped_jobs_file_names_configs_of_the_small_scale_and_commands_the_cli_takes(name):
    from lossbench.__main__ import build_parser

    known = {c.config_id for c in get_scale("small").known_configs}
    jobs = cpu_train.parse_jobs((Path(__file__).parent.parent / "benchmarks" / name).read_text())
    nets = [j for j in jobs if isinstance(j, Job)]
    assert nets and {j.config_id for j in nets} <= known and all(0 <= j.seed < 10 for j in nets)
    for run in (j for j in jobs if isinstance(j, Run)):
        args = build_parser().parse_args(list(run.args))  # a typo would end the run at once, hours in
        ids = {i for group in args.only or () for i in group}
        assert ids and ids <= known, run


def test_no_job_is_planned_to_end_after_the_deadline_and_a_free_core_takes_the_first_that_fits():
    t0 = dt.datetime(2026, 1, 1, 12, 0)
    long, mid, short = Job("a", 0, 120), Job("b", 0, 50), Job("c", 0, 10)
    planned = dict(cpu_train.plan([long, mid, short, Job("d", 0, 10)], 2, t0, t0 + dt.timedelta(minutes=60)))
    # the 120-minute job never starts; the other core frees at 12:50 and takes what still fits
    assert planned == {long: None, mid: t0, short: t0, Job("d", 0, 10): t0 + dt.timedelta(minutes=10)}
    for job, start in planned.items():
        assert start is None or start + dt.timedelta(minutes=job.minutes) <= t0 + dt.timedelta(minutes=60)
    # without a deadline every job starts, in order, on the first free core
    assert [s for _, s in cpu_train.plan([long, mid, short], 2, t0, None)] == [
        t0, t0, t0 + dt.timedelta(minutes=50)]


def test_a_net_counts_as_shipped_only_with_its_configs_hash_and_intact_weights(tmp_path):
    config = get_scale("ci").configs[0].replace(seed=1)
    job = Job(config.replace(seed=0).config_id, 1, 5)
    folder = tmp_path / "ci" / "seed-nets"
    folder.mkdir(parents=True)
    weights = folder / f"{config.config_id}.pt"
    weights.write_bytes(b"weights")
    meta = folder / f"{config.config_id}.json"
    prov = {"config_hash": config.config_hash, "weights_file": weights.name,
            "weights_sha256": hashlib.sha256(b"weights").hexdigest()}
    meta.write_text(json.dumps(prov))
    assert cpu_train.shipped_files(job, "ci", tmp_path) == [meta, weights]
    weights.write_bytes(b"other weights")  # trained again elsewhere, or damaged
    assert cpu_train.shipped_files(job, "ci", tmp_path) is None
    weights.write_bytes(b"weights")
    meta.write_text(json.dumps({**prov, "config_hash": "another recipe"}))
    assert cpu_train.shipped_files(job, "ci", tmp_path) is None
    weights.unlink()
    meta.write_text(json.dumps(prov))  # the provenance alone, as for the seed nets trained elsewhere
    assert cpu_train.shipped_files(job, "ci", tmp_path) is None
    with pytest.raises(ValueError, match="unknown config id 'resnet999-bs1-s0'"):
        cpu_train.shipped_files(Job("resnet999-bs1-s0", 0, 1), "ci", tmp_path)



def test_a_run_line_reads_with_its_prerequisites_and_a_bad_one_is_named():
    text = ("resnet20-bs128-s0:1 10\n"
            "run spread-r20 40 after=resnet20-bs128-s0:1 -- baselines --scale small --spread --only resnet20-bs128-s0\n"
            "run later 5 after=spread-r20,resnet20-bs128-s0:1 -- baselines --scale small\n"
            "run alone 5 -- spectrum --help\n")
    jobs = cpu_train.parse_jobs(text)
    assert jobs[1] == Run("spread-r20", 40.0, ("resnet20-bs128-s0:1",),
                          ("baselines", "--scale", "small", "--spread", "--only", "resnet20-bs128-s0"))
    assert jobs[2].after == ("spread-r20", "resnet20-bs128-s0:1") and jobs[3].after == ()
    assert jobs[1].tag == "[queue spread-r20]"
    with pytest.raises(ValueError, match="after=resnet20-bs128-s0:2 names no earlier job"):
        cpu_train.parse_jobs("run a 5 after=resnet20-bs128-s0:2 -- baselines\nresnet20-bs128-s0:2 10")
    with pytest.raises(ValueError, match="a is named twice"):
        cpu_train.parse_jobs("run a 5 -- baselines\nrun a 6 -- baselines")
    for bad in ("run a 5 baselines", "run a 5 -- ", "run a 5 before=x -- baselines", "run a five -- baselines"):
        with pytest.raises(ValueError, match="expected 'CONFIG_ID:SEED MINUTES'.*or 'run LABEL MINUTES"):
            cpu_train.parse_jobs(bad)


def test_a_run_waits_for_its_prerequisites_and_what_waits_for_a_job_that_does_not_fit_never_starts():
    t0 = dt.datetime(2026, 1, 1, 12, 0)
    a, b = Job("a", 1, 30), Job("b", 1, 60)
    after_a = Run("after-a", 10, ("a:1",), ("x",))
    after_both = Run("after-both", 10, ("a:1", "b:1"), ("x",))
    free = Run("free", 10, (), ("x",))
    planned = dict(cpu_train.plan([a, b, after_both, after_a, free], 2, t0, None))
    at = lambda minutes: t0 + dt.timedelta(minutes=minutes)  # noqa: E731
    # a core frees at 12:30: after-both is not ready (b ends 13:00), after-a is; then free at 12:40
    assert planned == {a: t0, b: t0, after_a: at(30), free: at(40), after_both: at(60)}
    # its prerequisite done before: ready at once
    assert dict(cpu_train.plan([after_a], 1, t0, None, frozenset({"a:1"}))) == {after_a: t0}
    # b cannot end by 12:45, so what waits for it never starts, while the rest goes on
    planned = dict(cpu_train.plan([a, b, after_both, after_a], 2, t0, at(45)))
    assert planned == {a: t0, b: None, after_both: None, after_a: at(30)}


def _git(root, *args):
    import subprocess

    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def test_a_run_commits_its_baselines_files_and_not_a_nets_and_its_tag_marks_it_done(tmp_path, monkeypatch):
    """What a run commits is baselines/ less the nets' folders (a training job, running beside it, commits
    its own net); a run that changed nothing still leaves its tag; only the tag in HEAD's history counts."""
    root = tmp_path / "repo"
    (root / "baselines" / "small" / "nets").mkdir(parents=True)
    _git(root.parent, "init", "-q", str(root))
    _git(root, "config", "user.email", "t@t"), _git(root, "config", "user.name", "t")
    (root / "baselines" / "small" / "a.json").write_text("1")
    (root / "baselines" / "small" / "nets" / "n.pt").write_text("1")
    _git(root, "add", "-A"), _git(root, "commit", "-qm", "start")
    monkeypatch.setattr(cpu_train, "ROOT", root)
    run = Run("spread-a", 1, (), ("baselines",))
    assert not cpu_train.run_committed(run, root)
    (root / "baselines" / "small" / "a.json").write_text("2")  # the writer's output
    (root / "baselines" / "small" / "spectrum").mkdir()
    (root / "baselines" / "small" / "spectrum" / "b.json").write_text("new")
    (root / "baselines" / "small" / "nets" / "n.pt").write_text("2")  # a net being shipped beside it
    (root / "elsewhere.txt").write_text("not the run's")
    assert cpu_train.commit(cpu_train.run_paths("small"), f"spread {run.tag}", allow_empty=True)
    assert sorted(_git(root, "show", "--name-only", "--format=", "HEAD").split()) == [
        "baselines/small/a.json", "baselines/small/spectrum/b.json"]
    assert sorted(_git(root, "status", "--porcelain").split("\n")[:-1]) == [
        " M baselines/small/nets/n.pt", "?? elsewhere.txt"]
    assert cpu_train.run_committed(run, root)
    assert not cpu_train.run_committed(Run("spread", 1, (), ("baselines",)), root)  # the whole tag, not a prefix
    assert cpu_train.commit(cpu_train.run_paths("small"), "nothing [queue empty]", allow_empty=True)
    assert cpu_train.run_committed(Run("empty", 1, (), ("x",)), root)


def test_an_edited_jobs_file_counts_in_its_new_order_without_starting_a_job_twice():
    """A queue reads its jobs file again when it changes: what it started (running, or ended whatever
    its end) is not started again, what is done meanwhile (shipped by hand) counts as done, and the
    rest is pending in the file's new order."""
    now = dt.datetime(2026, 12, 6, 12, 0)
    edited = cpu_train.parse_jobs(
        "resnet56-noshort-bs128-s0:5 70\n"      # new, first
        "resnet56-noshort-bs128-s0:3 70\n"      # running under this queue
        "resnet56-noshort-bs128-s0:4 70\n"      # shipped by hand meanwhile
        "resnet20-bs128-s0:1 10\n"              # ended under this queue, failed
        "run spread 20 after=resnet56-noshort-bs128-s0:4 -- baselines --spread\n")
    ends = {"resnet20-bs128-s0:2": now - dt.timedelta(hours=1)}
    shipped = {"resnet56-noshort-bs128-s0:4"}
    pending = cpu_train.pending_after_edit(edited, ends, {"resnet56-noshort-bs128-s0:3", "resnet20-bs128-s0:1"},
                                           lambda j: j.name in shipped, now)
    assert [j.name for j in pending] == ["resnet56-noshort-bs128-s0:5", "spread"]
    assert ends["resnet56-noshort-bs128-s0:4"] == now
    assert cpu_train.first_fitting(pending[1:], now, None, ends).name == "spread"  # what waited may start


def test_a_net_trained_in_the_cache_already_is_planned_at_its_shipping_time(tmp_path):
    """A calibration run of the same config hash is only shipped: planned at its training time it would
    wait for a deadline it does not need (the plain ResNet-56's seeds 0-2 on 2026-12-07 did)."""
    configs = get_scale("ci").configs
    done, todo = Job(configs[0].config_id, 1, 75), Job(configs[1].config_id, 0, 75)
    final = tmp_path / configs[0].replace(seed=1).config_hash / "final.json"
    final.parent.mkdir()
    final.write_text("{}")
    run = Run("tol", 30, (), ("baselines",))
    assert cpu_train.with_cached_minutes([done, todo, run], "ci", tmp_path) == [
        Job(done.config_id, 1, cpu_train.SHIP_MINUTES), todo, run]
    # seed 0 of the same config is another hash: not trained
    assert not cpu_train.trained_in_cache(Job(configs[0].config_id, 0, 75), "ci", tmp_path)
    t0 = dt.datetime(2026, 1, 1, 12, 0)
    planned = dict(cpu_train.plan(cpu_train.with_cached_minutes([done], "ci", tmp_path), 1, t0,
                                  t0 + dt.timedelta(minutes=30)))
    assert planned[Job(done.config_id, 1, cpu_train.SHIP_MINUTES)] == t0


_QUEUE_WITH_A_SLEEPING_JOB = """
import importlib.util, os, subprocess, sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("cpu_train", {script!r})
cpu_train = importlib.util.module_from_spec(spec)
sys.modules["cpu_train"] = cpu_train
spec.loader.exec_module(cpu_train)
child = "import os, pathlib, time; pathlib.Path({pid_file!r}).write_text(str(os.getpid())); time.sleep(300)"
cpu_train._lossbench = lambda *args, log=None, passive=False: subprocess.Popen(
    [sys.executable, "-c", child], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
cpu_train.is_done = lambda job, scale: False
sys.exit(cpu_train.main([{jobs!r}, "--procs", "1", "--logs", {logs!r}]))
"""


def test_a_stopped_queue_stops_its_jobs_too_and_leaves_none_running(tmp_path):
    """SIGTERM to the queue ends the jobs it started (each saves its state on SIGTERM) before the queue
    exits: a training job left running would train beside the same job started again by the next queue,
    on the same cache (the queue of 2026-12-07 left two)."""
    import os
    import signal
    import subprocess
    import time

    jobs = tmp_path / "jobs.txt"
    jobs.write_text("run sleepy 5 -- baselines --scale small\n")
    pid_file = tmp_path / "child.pid"
    script = _QUEUE_WITH_A_SLEEPING_JOB.format(script=str(Path(cpu_train.__file__)), pid_file=str(pid_file),
                                               jobs=str(jobs), logs=str(tmp_path / "logs"))
    queue = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and queue.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid_file.exists(), f"the queue started no job: {queue.communicate(timeout=30)[0]}"
        child = int(pid_file.read_text())
        queue.send_signal(signal.SIGTERM)
        out, _ = queue.communicate(timeout=120)
    finally:
        queue.kill()
    alive = True
    try:
        os.kill(child, 0)
    except ProcessLookupError:
        alive = False
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, f"the queue's job outlived it:\n{out}"
    assert queue.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM: 1 running job(s)" in out, out
