"""Train, ship and (optionally) commit a list of reference nets on this machine's CPU cores.

One single-threaded process per core (the shipped nets were trained with one thread: their weights
depend on it), jobs in the file's order, and none started that cannot end before ``--until``: a net
cut off by the end of a working session is lost with its cache, while one that fits is shipped
(``python -m lossbench ship``) the moment it ends and, with ``--commit-each``, committed on the current
branch (its own files only), so a finished net outlives the machine.

Usage (repository root)::

    python benchmarks/cpu_train.py benchmarks/cpu_jobs-small.txt --until 19:00 --commit-each
    python benchmarks/cpu_train.py benchmarks/cpu_jobs-small.txt --dry-run   # what would start, and why not
    # on a lent GPU, the same nets in one go (benchmarks/gpu_train.sh takes CONFIG_ID:SEED arguments)
    bash benchmarks/gpu_train.sh "$OUT" 420 12 $(python benchmarks/cpu_train.py benchmarks/cpu_jobs-small.txt --pending)

Jobs file: one ``CONFIG_ID:SEED MINUTES`` per line (a seed-0 config id of the scale, the training seed,
and the expected wall time on a core shared with one other job); ``#`` starts a comment. A job whose
net is shipped already (its provenance for this config hash and weights of that sha256) is skipped; an
interrupted one resumes from its checkpoints in ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Job:
    config_id: str  # the seed-0 id, as `train --only` takes it
    seed: int
    minutes: float

    @property
    def name(self) -> str:
        return f"{self.config_id}:{self.seed}"


def parse_jobs(text: str) -> list[Job]:
    """The jobs of a jobs file, in order; a malformed line is an error that names it."""
    jobs = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            name, minutes = line.split()
            config_id, seed = name.rsplit(":", 1)
            jobs.append(Job(config_id, int(seed), float(minutes)))
        except ValueError:
            raise ValueError(f"line {number} {raw!r}: expected 'CONFIG_ID:SEED MINUTES', "
                             "e.g. 'resnet56-bs128-s0:1 100'") from None
    return jobs


def shipped_files(job: Job, scale: str, baselines: Path) -> list[Path] | None:
    """The shipped files of the job's net if they are there and are this config's (provenance for its
    hash, weights of the recorded sha256), else None."""
    from lossbench.config import get_scale

    by_id = {c.config_id: c for c in get_scale(scale).known_configs}
    if job.config_id not in by_id:
        raise ValueError(f"unknown config id {job.config_id!r} in scale {scale!r}")
    config = by_id[job.config_id].replace(seed=job.seed)
    for kind in ("nets", "seed-nets", "gpu-nets"):
        meta = baselines / scale / kind / f"{config.config_id}.json"
        if not meta.exists():
            continue
        prov = json.loads(meta.read_text())
        weights = meta.with_name(prov["weights_file"])
        if prov["config_hash"] != config.config_hash or not weights.exists():
            return None
        if hashlib.sha256(weights.read_bytes()).hexdigest() != prov["weights_sha256"]:
            return None
        extra = [meta.with_name(prov["pca_file"])] if prov.get("pca_file") else []
        return [meta, weights, *extra]
    return None


def fits(job: Job, now: dt.datetime, until: dt.datetime | None) -> bool:
    """Whether the job, started now, is expected to end before ``until`` (always, without one)."""
    return until is None or now + dt.timedelta(minutes=job.minutes) <= until


def first_fitting(pending: list[Job], at: dt.datetime, until: dt.datetime | None) -> Job | None:
    """The rule of a free process: the first pending job that, started ``at``, ends by ``until``."""
    return next((job for job in pending if fits(job, at, until)), None)


def plan(jobs: list[Job], procs: int, now: dt.datetime, until: dt.datetime | None) -> list[tuple[Job, dt.datetime | None]]:
    """When each job would start if every job took its minutes (None: it would not fit): the live loop's
    rule, played out. Each time a process is free it takes the first pending job that fits."""
    free = [now] * procs
    pending, started = list(jobs), {}
    while pending:
        slot = min(range(procs), key=free.__getitem__)
        job = first_fitting(pending, free[slot], until)
        if job is None:
            break
        pending.remove(job)
        started[job] = free[slot]
        free[slot] += dt.timedelta(minutes=job.minutes)
    return [(job, started.get(job)) for job in jobs]


def _until(text: str | None) -> dt.datetime | None:
    """``HH:MM`` today (local time), or tomorrow if that is past."""
    if text is None:
        return None
    t = dt.datetime.combine(dt.date.today(), dt.time.fromisoformat(text))
    return t if t > dt.datetime.now() else t + dt.timedelta(days=1)


def _log(message: str) -> None:
    print(f"{dt.datetime.now():%H:%M:%S} {message}", flush=True)


def _lossbench(*args: str, log: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "lossbench", *args]
    if log is None:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with log.open("a") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


def ship_and_commit(job: Job, args: argparse.Namespace) -> None:
    """Ship the job's finished net and, with --commit-each, commit its files (and nothing else)."""
    ship = _lossbench("ship", "--scale", args.scale, "--cache-dir", args.cache_dir, "--only", job.config_id,
                      "--seeds", str(job.seed))
    out, _ = ship.communicate()
    summary = [line for line in out.splitlines() if line.startswith("shipped ")]
    if ship.returncode or not summary:
        _log(f"ship {job.name} failed (rc {ship.returncode}):\n{out}")
        return
    _log(summary[0])
    files = shipped_files(job, args.scale, ROOT / "baselines")
    if args.commit_each and files:
        rel = [str(p.relative_to(ROOT)) for p in files]
        _, shipped_id, rest = summary[0].split(None, 2)  # "shipped <config id with seed> train acc ..."
        message = f"shipped: {shipped_id}, trained on this CPU by benchmarks/cpu_train.py ({rest.strip()})"
        error = ""
        for _ in range(10):  # another git command may hold the index for a moment
            for command in (["add", "--", *rel], ["commit", "-q", "-m", message, "--", *rel]):
                run = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
                error = (run.stderr.strip() or f"git {command[0]} exited {run.returncode}") if run.returncode else ""
                if error:
                    break
            if not error:
                _log(f"committed {job.name}")
                return
            time.sleep(5)
        _log(f"could not commit {job.name} (its files are shipped; commit them by hand): {error}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("jobs", type=Path, help="the jobs file")
    p.add_argument("--until", default=None, metavar="HH:MM", help="start no job that would end after this time")
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="processes at once (default: the cores)")
    p.add_argument("--scale", default="small")
    p.add_argument("--cache-dir", default=str(ROOT / "results" / "cache-train"))
    p.add_argument("--logs", type=Path, default=ROOT / "results" / "train-logs")
    p.add_argument("--test-every", type=int, default=10, metavar="N",
                   help="evaluate the test set every N epochs and after the last (default 10; each evaluation is "
                        "27-36 %% of a small-scale epoch's time on a CPU, and the weights are the same)")
    p.add_argument("--commit-each", action="store_true", help="commit each shipped net's files on this branch")
    p.add_argument("--dry-run", action="store_true", help="say what would start and what is skipped, and stop")
    p.add_argument("--pending", action="store_true", help="print the jobs not shipped yet as CONFIG_ID:SEED, and stop")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    until = _until(args.until)
    jobs = parse_jobs(args.jobs.read_text())
    pending = [job for job in jobs if not shipped_files(job, args.scale, ROOT / "baselines")]
    if args.pending:
        print("\n".join(job.name for job in pending))
        return 0
    for job in jobs:
        if job not in pending:
            _log(f"skip {job.name}: shipped")
    if args.dry_run:
        for job, start in plan(pending, args.procs, dt.datetime.now(), until):
            when = f"would start at {start:%H:%M}" if start else f"would not end by {args.until}"
            _log(f"{when}: {job.name} ({job.minutes:g} min)")
        return 0
    args.logs.mkdir(parents=True, exist_ok=True)
    running: dict[Job, subprocess.Popen] = {}
    while pending or running:
        for job, proc in list(running.items()):
            if proc.poll() is not None:
                del running[job]
                _log(f"end {job.name} rc {proc.returncode}")
                if proc.returncode == 0:
                    ship_and_commit(job, args)
        while len(running) < args.procs:
            job = first_fitting(pending, dt.datetime.now(), until)
            if job is None:
                break
            pending.remove(job)
            _log(f"start {job.name} ({job.minutes:g} min expected)")
            running[job] = _lossbench("train", "--scale", args.scale, "--all", "--only", job.config_id,
                                      "--seed", str(job.seed), "--cache-dir", args.cache_dir,
                                      "--test-every", str(args.test_every),
                                      log=args.logs / f"train-{job.name}.txt")
        if not running:
            for job in pending:
                _log(f"not started {job.name}: {job.minutes:g} min would end after {args.until}")
            break
        time.sleep(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
