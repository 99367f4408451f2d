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


def test_the_jobs_file_reads_in_order_and_a_bad_line_is_named():
    jobs = cpu_train.parse_jobs("# comment\nresnet20-bs128-s0:1 10  # why\n\nresnet56-bs128-s0:2 20.5\n")
    assert jobs == [Job("resnet20-bs128-s0", 1, 10.0), Job("resnet56-bs128-s0", 2, 20.5)]
    with pytest.raises(ValueError, match=r"line 2 'resnet20-bs128-s0 10': expected 'CONFIG_ID:SEED MINUTES'"):
        cpu_train.parse_jobs("resnet20-bs128-s0:1 10\nresnet20-bs128-s0 10")


def test_the_shipped_jobs_file_names_configs_of_the_small_scale():
    known = {c.config_id for c in get_scale("small").known_configs}
    jobs = cpu_train.parse_jobs((Path(__file__).parent.parent / "benchmarks" / "cpu_jobs-small.txt").read_text())
    assert jobs and {j.config_id for j in jobs} <= known and all(j.seed in (0, 1, 2) for j in jobs)


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
