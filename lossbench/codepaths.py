"""Other machines' arithmetic, emulated: the same computation in a subprocess that takes another code
path of the same libraries.

Two CPUs with the same torch wheel may run different kernels: MKL dispatches by CPU unless its
conditional numerical reproducibility (``MKL_CBWR``) pins a branch; ATen's vectorised kernels follow
``ATEN_CPU_CAPABILITY``; oneDNN's follow ``ONEDNN_MAX_CPU_ISA``. Each is read once, when its library
loads, so a variant must run in a fresh process with the variable set. A baseline's recompute
tolerance covers the deviation of every such code path the writing machine can take
(:func:`code_paths`), so that the same file passes on a user's CPU.

The parent writes a job (a task name from :data:`TASKS` and JSON keyword arguments) into a private
folder and runs ``python -m lossbench.codepaths <job>``; the child runs the task and writes its result
with a probe of what it ran under (its pid, the variables it saw, ATen's capability), which the parent
checks: a variant that silently ran in-process, or without its variable, would measure nothing.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import LossbenchError

#: The variables that select a library's code path; a child gets exactly the one of its variant.
CODE_PATH_VARIABLES: tuple[str, ...] = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")

#: (variable, value, the CPU flag the branch needs or None, a flag whose presence rules it out or None):
#: MKL's reproducibility branches, and for ATen's vectorised kernels and oneDNN's the next branch below
#: the CPU's best. A library's default is its CPU's best (AVX512 kernels on an AVX-512 CPU, AVX2 on an
#: AVX2-only one), so asking an AVX2-only CPU for its AVX2 kernels would measure nothing: there the
#: branch below is ATen's scalar kernels and oneDNN's SSE4.1 ones.
CODE_PATHS: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("MKL_CBWR", "COMPATIBLE", None, None),
    ("MKL_CBWR", "SSE4_2", "sse4_2", None),
    ("MKL_CBWR", "AVX2", "avx2", None),
    ("MKL_CBWR", "AVX512", "avx512f", None),
    ("ATEN_CPU_CAPABILITY", "avx2", "avx512f", None),
    ("ATEN_CPU_CAPABILITY", "default", "avx2", "avx512f"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2", "avx512f", None),
    ("ONEDNN_MAX_CPU_ISA", "SSE41", "avx2", "avx512f"),
)


class CodePathError(LossbenchError):
    """A code-path recompute that failed or did not run where and how it was asked to."""


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def code_paths(flags: set[str] | None = None, machine: str | None = None) -> tuple[dict[str, str], ...]:
    """The code-path variants this CPU can take, each a ``{variable: value}`` for the child's environment,
    none of them the CPU's own default (:data:`CODE_PATHS`). None off x86-64 (the variables name x86
    branches)."""
    if (machine or platform.machine()) not in ("x86_64", "AMD64"):
        return ()
    flags = cpu_flags() if flags is None else flags
    return tuple({var: value} for var, value, need, unless in CODE_PATHS
                 if (need is None or need in flags) and (unless is None or unless not in flags))


def code_path_name(env: Mapping[str, str]) -> str:
    """``MKL_CBWR=AVX2``: the variant's name in a baseline's ``jitter_variants``."""
    return ",".join(f"{k}={v}" for k, v in sorted(env.items()))


def same_branch(code_paths: tuple[dict[str, str], ...],
                run: Callable[..., dict[str, Any]] | None = None) -> dict[str, str]:
    """Which variants compute bit for bit as the default or as an earlier variant on this CPU, by their
    :func:`digest` (each taken in a subprocess, about 2 s): ``{variant: "default" or the earlier
    variant's name}``. Measuring such a twin again would measure nothing (on an AMD EPYC, MKL's SSE4_2,
    AVX2 and AVX512 branches are one branch); a variant whose digest cannot be taken is its own branch."""
    run = run or run_code_path

    def digest_of(env: Mapping[str, str]) -> str | None:
        try:
            return run(env, "digest", {}).get("digest")
        except CodePathError:
            return None

    seen: dict[str, str] = {}
    default = digest_of({})
    if default:
        seen[default] = "default"
    twins = {}
    for env in code_paths:
        name, value = code_path_name(env), digest_of(env)
        if value is None:
            continue
        if value in seen:
            twins[name] = seen[value]
        else:
            seen[value] = name
    return twins


#: name -> task(**kwargs) -> JSON-safe dict. Filled by :func:`task`.
TASKS: dict[str, Callable[..., dict[str, Any]]] = {}


def task(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    TASKS[fn.__name__] = fn
    return fn


def run_code_path(env: Mapping[str, str], name: str, kwargs: Mapping[str, Any], *, threads: int = 1,
                  timeout: float | None = None) -> dict[str, Any]:
    """Run task ``name`` with ``kwargs`` in a fresh Python whose environment has ``env`` (and none of the
    other :data:`CODE_PATH_VARIABLES`); its result, after checking that the child saw ``env``.

    Raises :class:`CodePathError` naming the variant when the child fails or its probe disagrees.
    """
    if name not in TASKS:
        raise ValueError(f"unknown code-path task {name!r}; expected one of {', '.join(sorted(TASKS))}")
    unknown = set(env) - set(CODE_PATH_VARIABLES)
    if unknown:
        raise ValueError(f"{sorted(unknown)} do not select a code path; expected some of {CODE_PATH_VARIABLES}")
    label = code_path_name(env) or "default"
    child_env = {k: v for k, v in os.environ.items() if k not in CODE_PATH_VARIABLES}
    child_env.update(env)
    child_env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="lossbench-codepath-") as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"task": name, "kwargs": dict(kwargs), "threads": threads}))
        try:
            proc = subprocess.run([sys.executable, "-m", "lossbench.codepaths", str(job)], env=child_env,
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CodePathError(f"the {label} recompute of {name} ran past {timeout} s") from exc
        result = job.with_name("result.json")
        if proc.returncode != 0 or not result.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
            raise CodePathError(f"the {label} recompute of {name} failed (exit {proc.returncode}):\n{tail}")
        out = json.loads(result.read_text())
    probe = out["probe"]
    if probe["pid"] == os.getpid():
        raise CodePathError(f"the {label} recompute ran in this process, so it measured nothing")
    seen = {k: probe["env"].get(k) for k in CODE_PATH_VARIABLES}
    wanted = {k: env.get(k) for k in CODE_PATH_VARIABLES}
    if seen != wanted:
        raise CodePathError(f"the {label} recompute saw {seen} instead of {wanted}")
    if "ATEN_CPU_CAPABILITY" in env and probe["cpu_capability"].lower() != env["ATEN_CPU_CAPABILITY"].lower():
        raise CodePathError(f"the {label} recompute ran ATen's {probe['cpu_capability']} kernels")
    return out["result"] | {"probe": probe}


def _probe() -> dict[str, Any]:
    import torch

    return {"pid": os.getpid(), "env": {k: os.environ.get(k) for k in CODE_PATH_VARIABLES},
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


# --- tasks: what a baseline's writer recomputes on another code path ---------------------------------

#: The fields of a :class:`~lossbench.config.Scale` that set how its metrics are computed (the matrix
#: itself comes from its name).
_SCALE_FIELDS = ("surface_x", "surface_y", "eval_samples", "eval_batch", "hessian_samples", "hessian_batch",
                 "eig_map", "trajectory_grid", "dir_pairs", "engine", "line_x", "interp_x", "eig_samples",
                 "eig_max_iter", "eig_map_check", "spectrum_samples", "spectrum_probes", "spectrum_steps",
                 "connect_samples", "connect_check_t")


def scale_job(scale) -> dict[str, Any]:
    """What a child needs to compute exactly as ``scale`` (a :class:`~lossbench.config.Scale`, perhaps a
    test's reduced copy) does: its name, its computation settings and the Hessian's settings."""
    from .reproduce import CURVATURE

    return {"name": scale.name, **{f: getattr(scale, f) for f in _SCALE_FIELDS}, "curvature": dict(CURVATURE)}


def _scale(job: dict[str, Any]):
    """The inverse of :func:`scale_job`, in the child (it also sets the Hessian's settings)."""
    import dataclasses

    from . import reproduce
    from .config import get_scale

    reproduce.CURVATURE.update(job.get("curvature", {}))
    return dataclasses.replace(get_scale(job["name"]), **{f: job[f] for f in _SCALE_FIELDS if f in job})


def _net(config: dict, scale: dict, baselines_dir: str | None, cache_dir: str | None, *, cached: bool = True):
    """The net of ``config`` as the parent has it: shipped, or from the training cache (``cached``: it
    must be there, or the child would train other weights on its own code path)."""
    from .config import RunConfig
    from .regenerate import net_of

    cfg, sc = RunConfig.from_dict(config), _scale(scale)
    if cached and not sc.shipped:
        root = Path(cache_dir) if cache_dir else None
        from .train import default_cache_dir

        if not ((root or default_cache_dir()) / cfg.config_hash / "final.json").exists():
            raise CodePathError(f"{cfg.config_id} is not in the training cache {root}; train it first")
    return cfg, sc, net_of(cfg, sc, baselines_dir=baselines_dir or "baselines", device="cpu", cache_dir=cache_dir)


@task
def study(config: dict, scale: dict, results_dir: str, baselines_dir: str | None = None,
          cache_dir: str | None = None) -> dict[str, Any]:
    """Every metric the suite checks for one net, as the suite computes it: the main job's
    :func:`~lossbench.reproduce.study_net` for a shipped net, :func:`~lossbench.reproduce.reproduce` for a
    retrained one; with the Hutchinson terms (``trace_terms``)."""
    from .data import load_dataset
    from .reproduce import reproduce, study_net

    cfg, sc, net = _net(config, scale, baselines_dir, cache_dir)
    data = load_dataset(cfg)
    if sc.shipped:
        record, flat = study_net(cfg, sc, net=net, data=data, results_dir=results_dir)
        return {"metrics": flat, "trace_terms": record["curvature_details"]["trace_terms"]}
    rep = reproduce(cfg, sc, model=net.model, final=net.final, data=data, results_dir=results_dir,
                    checkpoints=net.checkpoints)
    return {"metrics": rep.metrics, "trace_terms": rep.details.get("trace_terms", [])}


@task
def curvature(config: dict, scale: dict, baselines_dir: str | None = None, cache_dir: str | None = None
              ) -> dict[str, Any]:
    """The Hessian numbers at a net's minimum as the suite computes them (the scale's image subset 0;
    a shipped net, or a retrained one from ``cache_dir``): the part of a net's baseline that a math
    library's code path moves the most (a Hutchinson trace cancels heavily), in a minute instead of the
    whole study."""
    from .data import load_dataset
    from .reproduce import scale_curvature

    cfg, sc, net = _net(config, scale, baselines_dir, cache_dir)
    metrics, details = scale_curvature(net.model, load_dataset(cfg), sc)
    return {"metrics": metrics, "trace_terms": details["trace_terms"]}


@task
def train_study(config: dict, scale: dict, results_dir: str, cache_dir: str) -> dict[str, Any]:
    """Train ``config`` on this code path (its own cache) and measure it as the suite does: what a user's
    machine does with a ``ci`` net."""
    from .config import RunConfig
    from .data import load_dataset
    from .reference_nets import state_sha256
    from .reproduce import converged, reproduce
    from .train import train

    cfg, sc = RunConfig.from_dict(config), _scale(scale)
    net = train(cfg, cache_dir=cache_dir)
    rep = reproduce(cfg, sc, model=net.model, final=net.final, data=load_dataset(cfg), results_dir=results_dir,
                    checkpoints=net.checkpoints)
    return {"metrics": rep.metrics, "final": dict(net.final), "converged": converged(net.final),
            "weights_sha256": state_sha256(net.model.state_dict())}


@task
def eig_map(config: dict, scale: dict, path: str, baselines_dir: str | None = None,
            cache_dir: str | None = None, points: bool = False) -> dict[str, Any]:
    """The eigen-ratio map summary of one net (:func:`~lossbench.reproduce.eig_map_summary`), with
    every point's eigenvalues when ``points``."""
    from .data import load_dataset
    from .reproduce import eig_map_summary

    cfg, sc, net = _net(config, scale, baselines_dir, cache_dir)
    return {"metrics": eig_map_summary(path, net.model, load_dataset(cfg), sc, points=points)[1]}


@task
def spectrum_top(config: dict, scale: dict, baselines_dir: str | None = None,
                 cache_dir: str | None = None) -> dict[str, Any]:
    """The main job's check of a net's spectrum: its top eigenvalues
    (:func:`~lossbench.reproduce.spectrum_check_metrics`)."""
    from .data import load_dataset
    from .reproduce import spectrum_check_metrics

    cfg, sc, net = _net(config, scale, baselines_dir, cache_dir)
    return {"metrics": spectrum_check_metrics(net.model, load_dataset(cfg), sc)}


@task
def interpolation(small: dict, large: dict, scale: dict, path: str, baselines_dir: str | None = None,
                  cache_dir: str | None = None) -> dict[str, Any]:
    """The filter-normalisation experiment's interpolation between two nets."""
    from .data import load_dataset
    from .reproduce import interpolation_metrics

    cfg_a, sc, a = _net(small, scale, baselines_dir, cache_dir)
    _, _, b = _net(large, scale, baselines_dir, cache_dir)
    return {"metrics": interpolation_metrics(path, a.model, b.model, load_dataset(cfg_a), sc)}


@task
def trajectory(config: dict, scale: dict, path: str, baselines_dir: str | None = None,
               cache_dir: str | None = None) -> dict[str, Any]:
    """The surface on the PCA plane of one net's training path."""
    from .data import load_dataset
    from .reproduce import trajectory_metrics

    cfg, sc, net = _net(config, scale, baselines_dir, cache_dir)
    return {"metrics": trajectory_metrics(path, net.model, net, load_dataset(cfg), sc)}


@task
def connection(config: dict, scale: dict, control_file: str, control_sha256: str, seeds: list[int],
               baselines_dir: str | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """The main job's check of a stored mode-connecting curve between two training seeds of a config
    (:func:`~lossbench.reproduce.curve_check_metrics`)."""
    from .config import RunConfig
    from .connect import parameters_of
    from .data import load_dataset
    from .reference_nets import load_control_point
    from .reproduce import curve_check_metrics

    cfg = RunConfig.from_dict(config)
    cfg_a, sc, net_a = _net(cfg.replace(seed=seeds[0]).to_dict(), scale, baselines_dir, cache_dir)
    _, _, net_b = _net(cfg.replace(seed=seeds[1]).to_dict(), scale, baselines_dir, cache_dir)
    control = load_control_point(control_file, control_sha256, Path(control_file).stem)
    metrics = curve_check_metrics(net_a.model, parameters_of(net_a.model), parameters_of(net_b.model), control,
                                  load_dataset(cfg_a), sc)
    return {"metrics": metrics}


@task
def train_measure(config: dict, scale: dict, what: str, path: str, cache_dir: str) -> dict[str, Any]:
    """Train ``config`` on this code path (its own cache) and compute one of the main job's files of it:
    ``what`` = ``eig_map`` (the eigen-ratio map summary) or ``trajectory`` (the PCA-plane surface)."""
    from .config import RunConfig
    from .data import load_dataset
    from .reference_nets import state_sha256
    from .reproduce import eig_map_summary, trajectory_metrics
    from .train import train

    cfg, sc = RunConfig.from_dict(config), _scale(scale)
    net = train(cfg, cache_dir=cache_dir)
    data = load_dataset(cfg)
    if what == "eig_map":
        metrics = eig_map_summary(path, net.model, data, sc)[1]
    elif what == "trajectory":
        metrics = trajectory_metrics(path, net.model, net, data, sc)
    else:
        raise ValueError(f"what={what!r}; expected eig_map or trajectory")
    return {"metrics": metrics, "weights_sha256": state_sha256(net.model.state_dict())}


@task
def digest() -> dict[str, Any]:
    """A fingerprint of this code path's arithmetic: sha256 over the bits of MKL's GEMMs (float32 and
    float64, several shapes; float64 convolutions go through them too), oneDNN's float32 convolution
    forward and backward, and ATen's vectorised reductions, normalisation and elementwise kernels, on
    fixed random data. Each variable selects a branch for the whole library, so two code paths with the
    same digest took the same branches: one of them measures nothing the other does not."""
    import hashlib

    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    outs = []
    for dtype in (torch.float32, torch.float64):
        a = torch.randn(257, 263, generator=g, dtype=dtype)
        b = torch.randn(263, 129, generator=g, dtype=dtype)
        outs += [a @ b, a @ b[:, 0], a[:64, :64] @ a[:64, :64].T, torch.dot(a[0], a[1])]
        x = torch.randn(8, 16, 20, 20, generator=g, dtype=dtype, requires_grad=True)
        w = torch.randn(32, 16, 3, 3, generator=g, dtype=dtype, requires_grad=True)
        lin = torch.randn(10, 32, generator=g, dtype=dtype, requires_grad=True)
        y = F.batch_norm(F.conv2d(x, w, padding=1), None, None, training=True).relu()
        loss = F.cross_entropy(y.mean((2, 3)) @ lin.T, torch.arange(8) % 10)
        grads = torch.autograd.grad(loss, (x, w, lin), create_graph=True)
        hvp = torch.autograd.grad(sum((gr * gr).sum() for gr in grads), (w,))
        outs += [y, loss, *grads, *hvp, torch.softmax(y.flatten(1), 1), y.sum(), (y * y).sum(), y.exp().log1p()]
    h = hashlib.sha256()
    for t in outs:
        h.update(t.detach().contiguous().numpy().tobytes())
    return {"digest": h.hexdigest()}


@task
def probe() -> dict[str, Any]:
    """Nothing but the probe: what a child runs under (tests)."""
    return {}


def main(argv: list[str] | None = None) -> int:
    """The child: ``python -m lossbench.codepaths JOB`` runs the job and writes ``result.json`` beside it."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lossbench.codepaths JOB.json (written by lossbench.codepaths.run_code_path)",
              file=sys.stderr)
        return 2
    import torch

    job_path = Path(args[0])
    job = json.loads(job_path.read_text())
    torch.set_num_threads(int(job.get("threads", 1)))
    result = TASKS[job["task"]](**job["kwargs"])
    out = job_path.with_name("result.json")
    tmp = out.with_name(".result.json.tmp")
    tmp.write_text(json.dumps({"result": result, "probe": _probe()}))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
