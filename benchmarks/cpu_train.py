"""Train, ship and (optionally) commit a list of reference nets on this machine's CPU cores, then run the
commands that measure them (baselines writers), committing each one's files as it ends.

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

Jobs file, one job per line; ``#`` starts a comment:

* ``CONFIG_ID:SEED MINUTES``: train a net (a seed-0 config id of the scale, the training seed) and ship
  it. It is done when its net is shipped (its provenance for this config hash and weights of that
  sha256); an interrupted one resumes from its checkpoints in ``--cache-dir``.
* ``run LABEL MINUTES [after=NAME,...] -- ARGS...``: ``python -m lossbench ARGS...`` (e.g. ``baselines
  --scale small --spread --only ...``), started once the jobs it names (earlier lines: ``CONFIG_ID:SEED``
  or a run's label) are done. With ``--commit-each`` what it changed under ``baselines/`` (the nets'
  folders aside, which the training jobs commit) is committed with ``[queue LABEL]`` in the message,
  and that commit is what marks it done; it runs with OpenMP's passive waiting, so that a writer's
  2-thread recompute does not spin against the other core's job.

Stop it with SIGTERM (``kill PID``) or Ctrl-C: it tells its running jobs to save what they finished and
end, waits for them (a ship or a commit under way completes first), and the same command resumes.

MINUTES is the expected wall time on a core shared with one other job. The queue reads the jobs file
again when it changes: new lines and a new order count from then on, a job it started runs on.

Linux's autogroup scheduler (``/proc/sys/kernel/sched_autogroup_enabled``) shares the cores between
sessions, not processes: a test run or a writer started from another terminal (or ``setsid``) gets as
much CPU as all of the queue's jobs together. On 2 cores a third process of another session left the
two training jobs one core between them (a ResNet-56 epoch 36 s instead of 14). Give such work the
lowest share first, ``echo 19 > /proc/$$/autogroup`` in its shell, or stop the queue for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Job:
    """Train and ship one net."""

    config_id: str  # the seed-0 id, as `train --only` takes it
    seed: int
    minutes: float

    @property
    def name(self) -> str:
        return f"{self.config_id}:{self.seed}"

    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Run:
    """Run one lossbench command once the jobs named in ``after`` are done."""

    label: str
    minutes: float
    after: tuple[str, ...]
    args: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.label

    @property
    def tag(self) -> str:
        """What its commit's message carries, and what marks it done."""
        return f"[queue {self.label}]"


def _parse_run(line: str) -> Run:
    head, sep, args = line.partition(" -- ")
    words = head.split()
    if not sep or not args.split() or len(words) not in (3, 4) or (len(words) == 4 and not words[3].startswith("after=")):
        raise ValueError
    after = tuple(a for a in words[3].removeprefix("after=").split(",") if a) if len(words) == 4 else ()
    return Run(words[1], float(words[2]), after, tuple(args.split()))


def parse_jobs(text: str) -> list[Job | Run]:
    """The jobs of a jobs file, in order; a malformed line, a repeated name or an ``after`` that names
    no earlier job is an error that names the line."""
    jobs: list[Job | Run] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            if line.split()[0] == "run":
                job: Job | Run = _parse_run(line)
            else:
                name, minutes = line.split()
                config_id, seed = name.rsplit(":", 1)
                job = Job(config_id, int(seed), float(minutes))
        except ValueError:
            raise ValueError(f"line {number} {raw!r}: expected 'CONFIG_ID:SEED MINUTES' (e.g. 'resnet56-bs128-s0:1 "
                             "100') or 'run LABEL MINUTES [after=NAME,...] -- ARGS...' (e.g. 'run spread-r20 40 "
                             "after=resnet20-bs128-s0:1 -- baselines --scale small --spread --only resnet20-bs128-s0')"
                             ) from None
        names = [j.name for j in jobs]
        if job.name in names:
            raise ValueError(f"line {number} {raw!r}: {job.name} is named twice")
        missing = [a for a in job.after if a not in names]
        if missing:
            raise ValueError(f"line {number} {raw!r}: after={','.join(missing)} names no earlier job")
        jobs.append(job)
    return jobs


def job_config(job: Job, scale: str):
    """The job's config (its id's in ``scale``, at its seed); an unknown id is an error naming it."""
    from lossbench.config import get_scale

    by_id = {c.config_id: c for c in get_scale(scale).known_configs}
    if job.config_id not in by_id:
        raise ValueError(f"unknown config id {job.config_id!r} in scale {scale!r}")
    return by_id[job.config_id].replace(seed=job.seed)


def shipped_files(job: Job, scale: str, baselines: Path) -> list[Path] | None:
    """The shipped files of the job's net if they are there and are this config's (provenance for its
    hash, weights of the recorded sha256), else None."""
    config = job_config(job, scale)
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


#: Expected minutes of a job whose net is trained in the cache already (a calibration run of the same
#: config hash, or a queue stopped between training and shipping): shipping only, under a minute of CPU
#: for a ResNet-56 and a few of wall time on loaded cores.
SHIP_MINUTES = 5.0


def trained_in_cache(job: Job, scale: str, cache_dir: Path) -> bool:
    """Whether the job's net has finished training in ``cache_dir`` (:func:`lossbench.train.is_trained`)."""
    from lossbench.train import is_trained

    return is_trained(job_config(job, scale), cache_dir)


def with_cached_minutes(jobs: list[Job | Run], scale: str, cache_dir: Path) -> list[Job | Run]:
    """``jobs`` with each net trained in the cache already expected to take :data:`SHIP_MINUTES`: planned
    at its full training time it would wait for a deadline it does not need."""
    return [dataclasses.replace(j, minutes=min(j.minutes, SHIP_MINUTES))
            if isinstance(j, Job) and trained_in_cache(j, scale, cache_dir) else j for j in jobs]


def pending_after_edit(jobs: list[Job | Run], ends: dict[str, dt.datetime], started: set[str],
                       done: Callable[[Job | Run], bool], now: dt.datetime) -> list[Job | Run]:
    """The jobs of a jobs file edited while the queue runs that are still to start, in the file's new
    order: not started by this queue (running or ended, whatever its new line says) and not done. A job
    found done (shipped or committed meanwhile, e.g. by hand) is entered in ``ends`` at ``now``, so that
    what waits for it may start."""
    pending = []
    for job in jobs:
        if job.name in ends or job.name in started:
            continue
        if done(job):
            ends[job.name] = now
        else:
            pending.append(job)
    return pending


def fits(job: Job | Run, now: dt.datetime, until: dt.datetime | None) -> bool:
    """Whether the job, started now, is expected to end before ``until`` (always, without one)."""
    return until is None or now + dt.timedelta(minutes=job.minutes) <= until


def ready(job: Job | Run, at: dt.datetime, ends: dict[str, dt.datetime]) -> bool:
    """Whether every job it waits for has ended by ``at`` (``ends``: when each job ended or will end)."""
    return all(name in ends and ends[name] <= at for name in job.after)


def first_fitting(pending: list, at: dt.datetime, until: dt.datetime | None,
                  ends: dict[str, dt.datetime] | None = None) -> Job | Run | None:
    """The rule of a free process: the first pending job that is ready ``at`` and, started then, ends by
    ``until``."""
    return next((job for job in pending if fits(job, at, until) and ready(job, at, ends or {})), None)


def plan(jobs: list, procs: int, now: dt.datetime, until: dt.datetime | None,
         done: frozenset[str] = frozenset()) -> list[tuple[Job | Run, dt.datetime | None]]:
    """When each job would start if every job took its minutes (None: it would not fit, or waits for
    one that does not): the live loop's rule, played out. Each time a process is free it takes the first
    pending job that is ready and fits; with none, it waits for the next job to end. ``done``: names of
    jobs done before ``now``."""
    free = [now] * procs
    ends = dict.fromkeys(done, now)
    pending, started = list(jobs), {}
    while pending:
        slot = min(range(procs), key=free.__getitem__)
        job = first_fitting(pending, free[slot], until, ends)
        if job is None:
            later = [t for t in ends.values() if t > free[slot]]
            if not later:
                break
            free[slot] = min(later)
            continue
        pending.remove(job)
        started[job] = free[slot]
        free[slot] += dt.timedelta(minutes=job.minutes)
        ends[job.name] = free[slot]
    return [(job, started.get(job)) for job in jobs]


def _until(text: str | None) -> dt.datetime | None:
    """``HH:MM`` today (local time), or tomorrow if that is past."""
    if text is None:
        return None
    t = dt.datetime.combine(dt.date.today(), dt.time.fromisoformat(text))
    return t if t > dt.datetime.now() else t + dt.timedelta(days=1)


def _log(message: str) -> None:
    print(f"{dt.datetime.now():%H:%M:%S} {message}", flush=True)


def _lossbench(*args: str, log: Path | None = None, passive: bool = False) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT)}
    if passive:  # an idle OpenMP thread sleeps instead of spinning on a core another job needs
        env["OMP_WAIT_POLICY"] = "PASSIVE"
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
        if commit(rel, message):
            _log(f"committed {job.name}")
        else:
            _log(f"could not commit {job.name}: its files are shipped; commit them by hand")


def commit(paths: list[str], message: str, *, allow_empty: bool = False) -> bool:
    """Commit ``paths`` (pathspecs; new files included) and nothing else staged, retrying while another
    git command holds the index; whether it worked (the error is logged)."""
    error = ""
    for _ in range(10):  # another git command may hold the index for a moment
        for command in (["add", "-A", "--", *paths],
                        ["commit", "-q", *(["--allow-empty"] if allow_empty else []), "-m", message, "--", *paths]):
            run = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
            error = (run.stderr.strip() or f"git {command[0]} exited {run.returncode}") if run.returncode else ""
            if error:
                break
        if not error:
            return True
        time.sleep(5)
    _log(f"git: {error}")
    return False


def run_committed(run: Run, root: Path = ROOT) -> bool:
    """Whether a commit in HEAD's history carries the run's tag."""
    out = subprocess.run(["git", "log", "-1", "--format=%h", "--fixed-strings", f"--grep={run.tag}", "HEAD"],
                         cwd=root, capture_output=True, text=True)
    return bool(out.stdout.strip())


def run_paths(scale: str) -> list[str]:
    """What a run commits: baselines/, except the nets' folders (the training jobs commit those)."""
    return ["baselines", *(f":(exclude)baselines/{scale}/{kind}" for kind in ("nets", "seed-nets", "gpu-nets"))]


def is_done(job: Job | Run, scale: str) -> bool:
    if isinstance(job, Run):
        return run_committed(job)
    return shipped_files(job, scale, ROOT / "baselines") is not None


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
    jobs = with_cached_minutes(parse_jobs(args.jobs.read_text()), args.scale, Path(args.cache_dir))
    done = {job.name for job in jobs if is_done(job, args.scale)}
    pending = [job for job in jobs if job.name not in done]
    if args.pending:
        print("\n".join(job.name for job in pending if isinstance(job, Job)))
        return 0
    for job in jobs:
        if job.name in done:
            _log(f"skip {job.name}: {'committed' if isinstance(job, Run) else 'shipped'}")
    now = dt.datetime.now()
    if args.dry_run:
        for job, start in plan(pending, args.procs, now, until, frozenset(done)):
            when = f"would start at {start:%H:%M}" if start else f"would not end by {args.until}"
            _log(f"{when}: {job.name} ({job.minutes:g} min)")
        return 0
    args.logs.mkdir(parents=True, exist_ok=True)
    ends = dict.fromkeys(done, now)
    running: dict[Job | Run, subprocess.Popen] = {}
    stop: list[int] = []  # the signal that asked the queue to stop, once one did
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    try:
        _serve(args, pending, running, ends, until, stop)
    except KeyboardInterrupt:
        stop.append(signal.SIGINT)
    if stop:
        _log(f"stopped by {signal.Signals(stop[0]).name}: {len(running)} running job(s) told to save what they "
             "finished and end; run the same command again to resume")
        stop_all(running.values())
        return 128 + stop[0]
    return 0


def stop_all(procs: Iterable[subprocess.Popen], grace_s: float = 120.0) -> None:
    """End the queue's child processes the way a SIGTERM ends a training run or a writer (each saves what it
    finished and exits), so that none outlives the queue: one left running would train beside the same
    job started again by the next queue, on the same cache. A child still running after ``grace_s`` is
    killed."""
    procs = [p for p in procs if p.poll() is None]
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serve(args: argparse.Namespace, pending: list, running: dict, ends: dict, until: dt.datetime | None,
           stop: list[int]) -> None:
    """The queue's loop: start what fits on a free core, ship or commit what ended, until nothing is left
    or ``stop`` holds a signal (checked between steps, so that a ship or a commit under way completes)."""
    started: set[str] = set()
    edited = args.jobs.stat().st_mtime
    while (pending or running) and not stop:
        if args.jobs.stat().st_mtime != edited:  # an edit (a seed added, a new order) counts from now on
            edited = args.jobs.stat().st_mtime
            try:
                jobs = with_cached_minutes(parse_jobs(args.jobs.read_text()), args.scale, Path(args.cache_dir))
                pending = pending_after_edit(jobs, ends, started, lambda j: is_done(j, args.scale), dt.datetime.now())
                _log(f"read {args.jobs} again: {len(pending)} job(s) to start")
            except ValueError as exc:  # a half-saved or wrong edit: keep the list as it was
                _log(f"did not read {args.jobs} again: {exc}")
        for job, proc in list(running.items()):
            if proc.poll() is not None:
                del running[job]
                _log(f"end {job.name} rc {proc.returncode}")
                if proc.returncode == 0 and finish(job, args):
                    ends[job.name] = dt.datetime.now()
        while len(running) < args.procs:
            job = first_fitting(pending, dt.datetime.now(), until, ends)
            if job is None:
                break
            pending.remove(job)
            started.add(job.name)
            _log(f"start {job.name} ({job.minutes:g} min expected)")
            if isinstance(job, Run):
                running[job] = _lossbench(*job.args, log=args.logs / f"run-{job.label}.txt", passive=True)
            else:
                running[job] = _lossbench("train", "--scale", args.scale, "--all", "--only", job.config_id,
                                          "--seed", str(job.seed), "--cache-dir", args.cache_dir,
                                          "--test-every", str(args.test_every),
                                          log=args.logs / f"train-{job.name}.txt")
        if not running:
            for job in pending:
                waits = [a for a in job.after if a not in ends]
                why = (f"waits for {', '.join(waits)}" if waits
                       else f"{job.minutes:g} min would end after {args.until}")
                _log(f"not started {job.name}: {why}")
            break
        time.sleep(10)


def finish(job: Job | Run, args: argparse.Namespace) -> bool:
    """After a job's process ended well: ship (and commit) a net, commit a run's files; whether the job
    is done, so that what waits for it may start."""
    if isinstance(job, Job):
        ship_and_commit(job, args)
        return shipped_files(job, args.scale, ROOT / "baselines") is not None
    if not args.commit_each:
        return True
    message = (f"{job.label}: python -m lossbench {' '.join(job.args)}, run by benchmarks/cpu_train.py on this "
               f"CPU {job.tag}")
    if commit(run_paths(args.scale), message, allow_empty=True):
        _log(f"committed {job.name}")
        return True
    _log(f"could not commit {job.name}: commit its files under baselines/ by hand, with {job.tag} in the message")
    return False


if __name__ == "__main__":
    sys.exit(main())
