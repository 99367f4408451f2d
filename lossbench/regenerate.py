"""Writing ``baselines/<scale>/``: each net's values with measured recompute tolerances, the sampling
error of its Hessian numbers, the spread over training seeds, the eigen-ratio map summaries of the
ResNet-56 pairs, the interpolations and the PCA-plane surface.

What ``python -m lossbench baselines`` runs; the file format and the comparison live in
:mod:`lossbench.baselines`, the measurements in :mod:`lossbench.reproduce`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import baselines as bl
from ._io import write_text_atomic
from .codepaths import code_path_name, run_code_path, same_branch, scale_job
from .codepaths import code_paths as available_code_paths
from .config import RunConfig, Scale, find_config
from .data import ImageData, load_dataset
from .hessian import TraceResult
from .reference_nets import load_reference, shipped_ids, state_sha256
from .reproduce import (
    CURVATURE,
    HESSIAN_SUBSETS,
    RECOMPUTE_VARIANT_NAMES,
    TOL_METHOD,
    _max_deviation,
    _with_threads,
    converged,
    curvature_sampling,
    eig_map_jitter,
    eig_map_summary,
    eigenvector_plane,
    interpolation_metrics,
    recompute_jitter,
    scale_curvature,
    spectrum_check_metrics,
    spectrum_run,
    spectrum_summary_metrics,
    study_net,
    subset_sampling,
    terms_deviation,
    trajectory_metrics,
)
from .train import train


def _say(message: str) -> None:
    print(message, flush=True)


def net_of(config: RunConfig, scale: Scale, *, baselines_dir: str | Path, device: torch.device,
           cache_dir: str | Path | None = None, data_dir: str | Path | None = None):
    """The net of ``config`` (any training seed): a shipped one where the scale ships it (seed 0 from
    ``nets/``, other seeds from ``seed-nets/``, sha256-verified), else the cached (re)trained one."""
    if scale.shipped:
        kind = "nets" if config.seed == 0 else "seed-nets"
        if config.config_id not in shipped_ids(baselines_dir, scale.name, kind):
            raise FileNotFoundError(f"{config.config_id} is not in {baselines_dir}/{scale.name}/{kind}: train it and "
                                    f"ship it (python -m lossbench ship --scale {scale.name} --seeds {config.seed})")
        return load_reference(config.config_id, baselines_dir, scale.name, device=device, kind=kind)
    return train(config, device=device, cache_dir=cache_dir, data_dir=data_dir)


def weights_sha(net) -> str:
    return getattr(net, "state_sha256", None) or state_sha256(net.model.state_dict())


def all_pairs_metrics(config: RunConfig, scale: Scale, *, net, data, results_dir: Path, base: dict[str, float],
                      jitter: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """A shipped net's baseline covers every direction pair, the PCA and the 1D lines (what the main job
    checks; ``net`` is its :class:`~lossbench.reference_nets.ReferenceNet`). The jitter is measured on
    pair 0; a later pair's metric gets pair 0's relative jitter; the stored PCA is exact (jitter 0); the
    lines get their kind's floor."""
    _, flat = study_net(config, scale, net=net, data=data, results_dir=results_dir / "study")
    out_jitter = {}
    for name, value in flat.items():
        root = name.split("/")[0]
        if name in jitter:
            out_jitter[name] = jitter[name]
        elif root in jitter and base.get(root):
            out_jitter[name] = jitter[root] * abs(value) / abs(base[root])
        else:
            out_jitter[name] = 0.0
    return {**flat, **{k: v for k, v in base.items() if k in flat}}, out_jitter


def _previous(path: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """The baseline at ``path`` whose spread a rewrite keeps; {} when there is none or it is of an older
    format (its spread is then measured again with --spread)."""
    if not path.exists():
        return {}
    try:
        return bl.load_baseline(path)
    except bl.BaselineFileError as exc:
        say(f"replacing {path}: {exc}")
        return {}


def _kept(old: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: old[k] for k in keys if k in old}


def _sampling_entries(sampling: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {"sd": bl.round_sig(e["sd"], 4), "subsets": e["subsets"], "images": e["images"],
                   "values": [bl.round_sig(v, bl.VALUE_DIGITS) for v in e["values"]]}
            for name, e in sampling.items()}


@functools.cache
def _code_digest() -> str:
    """sha256 over lossbench's own source files: a code-path result kept by an earlier regeneration is
    reused only by the same code (a regeneration often follows a change of the method)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def code_path_jitter(task: str, kwargs: dict[str, Any], base: dict[str, float], *,
                     code_paths: tuple[dict[str, str], ...], say: Callable[[str], None] = _say,
                     base_terms: list[float] | None = None, done_dir: str | Path | None = None,
                     weights: str = "", twins: dict[str, str] | None = None
                     ) -> tuple[dict[str, float], dict[str, dict[str, float]], float]:
    """Recompute ``task`` (:data:`lossbench.codepaths.TASKS`) on every code path, each in a subprocess:
    (largest |deviation| of each metric of ``base``, variant -> its metrics, the largest mean
    |deviation| of the Hutchinson terms against ``base_terms``). With ``done_dir``, each finished code
    path's result is kept there (``<task>-<code path>.json``, keyed by the task, its arguments and the
    ``weights`` sha256 and lossbench's source) and taken from there by a rerun, so an interrupted
    regeneration resumes. ``twins`` (:func:`resolve_code_paths`): a code path that computes bit for bit
    as the default takes ``base`` (deviation 0), one that computes as an earlier code path takes its
    result, neither run again."""
    import hashlib
    import json

    key = hashlib.sha256(json.dumps({"task": task, "kwargs": kwargs, "weights": weights, "code": _code_digest()},
                                    sort_keys=True, default=str).encode()).hexdigest()
    measured: dict[str, dict[str, float]] = {}
    terms: dict[str, list[float]] = {}
    twins = twins or {}
    for env in code_paths:
        name = code_path_name(env)
        twin = twins.get(name)
        if twin is not None:
            measured[name] = dict(base) if twin == "default" else measured[twin]
            if twin != "default" and twin in terms:
                terms[name] = terms[twin]
            say(f"  {task} on code path {name}: computes as {twin} on this CPU, not run again")
            continue
        kept = Path(done_dir) / f"{task}-{name or 'default'}.json" if done_dir else None
        stored = json.loads(kept.read_text()) if kept is not None and kept.exists() else {}
        if stored.get("key") == key:
            out = stored["result"]
            say(f"  {task} on code path {name}: kept from {kept}")
        else:
            out = run_code_path(env, task, kwargs)
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(kept, json.dumps({"key": key, "result": out}))
        measured[name] = out["metrics"]
        if out.get("trace_terms"):
            terms[name] = out["trace_terms"]
        say(f"  {task} on code path {name}: done")
    return _max_deviation(base, measured), measured, terms_deviation(base_terms or [], terms)


def resolve_code_paths(code_paths: tuple[dict[str, str], ...] | None, say: Callable[[str], None] = _say
                       ) -> tuple[tuple[dict[str, str], ...], dict[str, str]]:
    """A writer's code paths and their twins: as given (each measured), or with None every one this CPU
    can take, with those that compute bit for bit as the default or as an earlier one
    (:func:`~lossbench.codepaths.same_branch`), so that each distinct branch is measured once."""
    if code_paths is not None:
        return tuple(code_paths), {}
    paths = available_code_paths()
    twins = same_branch(paths, run_code_path)
    for name, twin in twins.items():
        say(f"code path {name} computes bit for bit as {twin} on this CPU (their digests agree): counted as it")
    return paths, twins


def _twins_entry(twins: dict[str, str] | None) -> dict[str, Any]:
    """A file's record of the code paths it counted as another (``code_path_twins``), if any."""
    return {"code_path_twins": dict(sorted(twins.items()))} if twins else {}


def _merge_jitter(*jitters: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for jitter in jitters:
        for name, value in jitter.items():
            out[name] = max(out.get(name, 0.0), value)
    return out


def chosen_configs(pool: Iterable[RunConfig], extra: Iterable[RunConfig], only: Iterable[str] | None,
                   what: str) -> list[RunConfig]:
    """The configs a writer does: its ``pool`` (what the main job checks), or with ``only`` the ones of
    ``pool`` and ``extra`` that it names. ``extra`` are the scale's authors'-recipe configs of the same
    kind, selected by id only: their files can be written while their matrix is not yet judged.

    Raises ValueError naming an id that is neither, with the ids it may name."""
    pool = list(pool)
    if not only:
        return pool
    known = {c.config_id: c for c in [*pool, *extra]}
    wanted = set(only)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: not among the {what}; expected some of {', '.join(known)}")
    return [c for c in known.values() if c.config_id in wanted]


def write_recompute_baselines(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                              only: Iterable[str] | None = None, cache_dir: str | Path | None = None,
                              data_dir: str | Path | None = None, say: Callable[[str], None] = _say,
                              code_paths: tuple[dict[str, str], ...] | None = None) -> list[Path]:
    """Value, recompute tolerance and (Hessian numbers) sampling error of every net of ``scale`` (or
    ``only`` these ids); keeps a stored spread. ``code_paths``: the other machines' code paths measured
    in subprocesses (default: every one this CPU can take, :func:`lossbench.codepaths.code_paths`)."""
    code_paths, twins = resolve_code_paths(code_paths, say)
    written = []
    for config in chosen_configs(scale.all_configs, scale.authors_configs, only, f"{scale.name} scale's nets"):
        if scale.shipped and config.config_id not in shipped_ids(baselines_dir, scale.name):
            say(f"skip {config.config_id}: not shipped in {baselines_dir}/{scale.name}/nets yet")
            continue
        path = Path(baselines_dir) / scale.name / f"{config.config_id}.json"
        old = _previous(path, say)
        data = load_dataset(config, data_dir=data_dir)
        net = net_of(config, scale, baselines_dir=baselines_dir, device=device, cache_dir=cache_dir, data_dir=data_dir)
        checkpoints = None if scale.shipped else net.checkpoints
        terms: dict[str, list[float]] = {}
        base, jitter, _ = recompute_jitter(config, scale, model=net.model, data=data, results_dir=results_dir,
                                           checkpoints=checkpoints, trace_terms=terms)
        if scale.shipped:  # every direction pair, the stored PCA, the lines
            base, jitter = all_pairs_metrics(config, scale, net=net, data=data, results_dir=results_dir,
                                             base=base, jitter=jitter)
        kwargs = dict(config=config.to_dict(), scale=scale_job(scale), results_dir=str(results_dir / "codepaths"),
                      baselines_dir=str(baselines_dir), cache_dir=None if cache_dir is None else str(cache_dir))
        cp_jitter, _, cp_terms = code_path_jitter("study", kwargs, base, code_paths=code_paths, twins=twins, say=say,
                                                  base_terms=terms.get("base"), weights=weights_sha(net),
                                                  done_dir=results_dir / "codepaths" / config.config_id / "study-done")
        jitter = _merge_jitter(jitter, cp_jitter)
        conditioning = {}
        if "trace" in jitter and terms.get("base"):
            bound = max(cp_terms, terms_deviation(terms["base"], {k: v for k, v in terms.items() if k != "base"}))
            kappa = TraceResult(0.0, 0.0, len(terms["base"]), tuple(terms["base"])).conditioning
            conditioning = {"trace": {"terms_deviation": bl.round_sig(bound, 3), "conditioning": bl.round_sig(kappa, 4),
                                      "measured_deviation": bl.round_sig(jitter["trace"], 3)}}
            jitter["trace"] = max(jitter["trace"], bound)
        sampling = curvature_sampling(net.model, data, scale)
        doc = bl.make_baseline(
            config.config_id, scale.name, base, source=bl.provenance(str(device), weights_sha256=weights_sha(net)),
            tolerances=bl.recompute_tolerances(base, jitter),
            extra={"config_hash": config.config_hash, "final": {k: bl.round_sig(v) for k, v in net.final.items()},
                   "converged": converged(net.final), **_kept(old, "spread"),
                   "jitter": {k: bl.round_sig(v, 3) for k, v in jitter.items()},
                   "jitter_variants": sorted([*RECOMPUTE_VARIANT_NAMES, *map(code_path_name, code_paths)]),
                   **_twins_entry(twins),
                   **({"conditioning": conditioning} if conditioning else {}),
                   "sampling": _sampling_entries(sampling),
                   "tolerance_method": TOL_METHOD.format(factor=bl.SAFETY_FACTOR, subsets=HESSIAN_SUBSETS)},
        )
        bl.write_baseline(path, doc)
        say(f"wrote {path}")
        written.append(path)
    return written


def seed_metrics(config: RunConfig, scale: Scale, *, data: ImageData, baselines_dir: str | Path, results_dir: Path,
                 device: torch.device, cache_dir: str | Path | None = None, data_dir: str | Path | None = None
                 ) -> tuple[dict[str, float], dict[str, float], bool, str]:
    """(flat metrics as the suite computes them, final, converged, weights sha256) of one training seed."""
    net = net_of(config, scale, baselines_dir=baselines_dir, device=device, cache_dir=cache_dir, data_dir=data_dir)
    _, flat = study_net(config, scale, net=net, data=data, results_dir=results_dir / f"seed{config.seed}")
    return flat, dict(net.final), converged(net.final), weights_sha(net)


def write_spread(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                 seeds: tuple[int, ...], only: Iterable[str] | None = None, cache_dir: str | Path | None = None,
                 data_dir: str | Path | None = None, say: Callable[[str], None] = _say,
                 code_paths: tuple[dict[str, str], ...] | None = None) -> list[Path]:
    """Add every metric at each training seed to existing baseline files (``spread``): seed 0's values are
    the baseline's own; the others are measured on the seed nets (shipped to ``seed-nets/`` at a shipped
    scale, trained otherwise) exactly as the suite measures seed 0.

    At a retrained scale, seed 0 is also trained and measured on every code path (``code_paths``,
    default every one this CPU can take; each in a subprocess with a training cache of its own), as a
    user's CPU would train it: ``spread.code_paths`` holds their values and ``spread.band`` the
    statistics over seeds and code paths that the spread tier compares with. At a shipped scale each
    further seed's Hessian numbers also get their own recompute jitter (``spread.jitter``,
    :func:`seed_jitter`)."""
    # a shipped scale's seeds are measured on their own nets, whose Hessian jitter each gets; a retrained
    # scale's seed 0 is trained again on every code path
    code_paths, twins = resolve_code_paths(code_paths, say) if scale.shipped else (
        available_code_paths() if code_paths is None else tuple(code_paths), {})
    written = []
    for config in chosen_configs(scale.all_configs, scale.authors_configs, only, f"{scale.name} scale's nets"):
        path = Path(baselines_dir) / scale.name / f"{config.config_id}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; write it first with `python -m lossbench baselines "
                                    f"--scale {scale.name}` (the recompute tolerances), then --spread")
        doc = bl.load_baseline(path)
        data = load_dataset(config, data_dir=data_dir)
        samples: dict[str, list[float]] = {}
        finals, conv, shas = [], [], []
        for seed in seeds:
            if seed == 0:
                flat = {k: v["value"] for k, v in doc["metrics"].items()}
                final, ok, sha = doc.get("final", {}), bool(doc.get("converged")), doc["source"].get("weights_sha256")
            else:
                flat, final, ok, sha = seed_metrics(config.replace(seed=seed), scale, data=data, results_dir=results_dir,
                                                    baselines_dir=baselines_dir, device=device, cache_dir=cache_dir,
                                                    data_dir=data_dir)
            for name in doc["metrics"]:
                samples.setdefault(name, []).append(float(flat.get(name, float("nan"))))
            finals.append({k: bl.round_sig(v) for k, v in final.items()})
            conv.append(ok)
            shas.append(sha)
            say(f"{config.config_id}: seed {seed} measured")
        doc["spread"] = {"seeds": list(seeds), "metrics": bl.spread_stats(samples, keep_values=True),
                         "finals": finals, "converged": conv, "weights_sha256": shas}
        if not scale.shipped and code_paths:
            doc["spread"].update(_code_path_nets(config, scale, doc, samples, results_dir=results_dir,
                                                 cache_dir=cache_dir, code_paths=code_paths, say=say))
        if scale.shipped:  # the all-seeds check's tolerance for each seed's Hessian numbers
            doc["spread"].update(_seed_jitter_entry(config, scale, doc, seeds, data=data, baselines_dir=baselines_dir,
                                                    results_dir=results_dir, device=device, code_paths=code_paths,
                                                    twins=twins, cache_dir=cache_dir, data_dir=data_dir, say=say))
        bl.write_baseline(path, doc)
        say(f"wrote the spread of {path}")
        written.append(path)
    return written


#: The numbers whose recompute jitter is measured at every training seed, not only seed 0 (the
#: all-seeds check's tolerance for them; :func:`write_seed_jitter`): the Hessian numbers at the
#: minimum. Second derivatives through the convolutions carry a code path's rounding much further at
#: some nets than at others: oneDNN's AVX2 and AVX-512 kernels moved the seed recipe's ResNet-56 at
#: batch 2000, seed 2 (off its minimum), by 1e-4 of its lambda_max and trace, where seed 0's moved by
#: 1e-6, so seed 0's tolerance scaled by the value does not cover another seed.
SEED_JITTER_METRICS = ("eig_max", "eig_min", "eig_ratio_center", "trace")


def seed_jitter(config: RunConfig, scale: Scale, *, net, data: ImageData, stored: dict[str, float],
                baselines_dir: str | Path, results_dir: Path, code_paths: tuple[dict[str, str], ...],
                twins: dict[str, str] | None = None, cache_dir: str | Path | None = None,
                say: Callable[[str], None] = _say) -> dict[str, float]:
    """The largest |deviation| of one training seed's Hessian numbers at its minimum
    (:data:`SEED_JITTER_METRICS`, :func:`lossbench.reproduce.scale_curvature`) from their ``stored``
    values, over: this process in float32 and in float64, and every other code path (each in a
    subprocess; ``twins``: see :func:`code_path_jitter`). Measured against the stored values, so a
    spread written on another CPU counts that CPU's deviation too. Units: each metric's own."""
    base, _ = scale_curvature(net.model, data, scale)
    wide, _ = scale_curvature(copy.deepcopy(net.model).to(torch.float64), data.to(torch.float64), scale)
    here = _max_deviation(stored, {"this CPU": base, "dtype=float64": wide})
    kwargs = dict(config=config.to_dict(), scale=scale_job(scale), baselines_dir=str(baselines_dir),
                  cache_dir=None if cache_dir is None else str(cache_dir))
    # a code path that computes as this CPU's default gives this CPU's values, counted above
    twins = twins or {}
    paths = tuple(env for env in code_paths if twins.get(code_path_name(env)) != "default")
    twins = {name: twin for name, twin in twins.items() if twin != "default"}
    elsewhere, _, _ = code_path_jitter("curvature", kwargs, stored, code_paths=paths, twins=twins, say=say,
                                       weights=weights_sha(net),
                                       done_dir=results_dir / "codepaths" / config.config_id / "seed-jitter-done")
    return _merge_jitter(here, elsewhere)


def _seed_jitter_entry(config: RunConfig, scale: Scale, doc: dict[str, Any], seeds: Iterable[int], *,
                       data: ImageData, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                       code_paths: tuple[dict[str, str], ...], twins: dict[str, str],
                       cache_dir: str | Path | None, data_dir: str | Path | None,
                       say: Callable[[str], None]) -> dict[str, Any]:
    """``spread.jitter`` (metric -> one entry per spread seed; seed 0's is the file's own ``jitter``)
    and ``spread.jitter_variants`` of ``doc`` with ``seeds`` measured (:func:`seed_jitter`) on the
    weights the spread names."""
    spread = doc["spread"]
    stored_seeds = list(spread["seeds"])
    names = [m for m in SEED_JITTER_METRICS if m in spread["metrics"]]
    old = spread.get("jitter") or {}
    table = {m: list(old[m]) if len(old.get(m) or []) == len(stored_seeds) else [None] * len(stored_seeds)
             for m in names}
    for seed in seeds:
        if seed not in stored_seeds:
            raise ValueError(f"{config.config_id}: seed {seed} is not in the stored spread (seeds {stored_seeds}); "
                             f"measure it first with `python -m lossbench baselines --scale {scale.name} --spread "
                             f"--seeds {' '.join(map(str, sorted({*stored_seeds, seed})))} --only {config.config_id}`")
        i = stored_seeds.index(seed)
        if seed == 0:
            for m in names:
                table[m][i] = (doc.get("jitter") or {}).get(m)
            continue
        seed_config = config.replace(seed=seed)
        net = net_of(seed_config, scale, baselines_dir=baselines_dir, device=device, cache_dir=cache_dir,
                     data_dir=data_dir)
        shas, sha = spread.get("weights_sha256") or [], weights_sha(net)
        if len(shas) == len(stored_seeds) and shas[i] != sha:
            raise ValueError(f"{config.config_id}: the spread's values at seed {seed} were measured on other weights "
                             f"({str(shas[i])[:12]}, these {sha[:12]}); measure them again with `python -m "
                             f"lossbench baselines --scale {scale.name} --spread --only {config.config_id}`")
        stored = {m: float(spread["metrics"][m]["values"][i]) for m in names}
        deviation = seed_jitter(seed_config, scale, net=net, data=data, stored=stored,
                                baselines_dir=baselines_dir, results_dir=results_dir, code_paths=code_paths,
                                twins=twins, cache_dir=cache_dir, say=say)
        for m in names:
            table[m][i] = bl.round_sig(deviation[m], 3)
        say(f"{config.config_id}: seed {seed}'s Hessian jitter measured")
    return {"jitter": table, "jitter_variants": sorted(["this CPU", "dtype=float64", *map(code_path_name, code_paths)])}


def write_seed_jitter(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                      seeds: tuple[int, ...], only: Iterable[str] | None = None, cache_dir: str | Path | None = None,
                      data_dir: str | Path | None = None, say: Callable[[str], None] = _say,
                      code_paths: tuple[dict[str, str], ...] | None = None) -> list[Path]:
    """Add each training seed's recompute jitter of its Hessian numbers to a stored spread
    (``spread.jitter``, :func:`seed_jitter`), the spread's values unchanged: what the all-seeds check
    (``pytest benchmarks --lossbench-all-seeds``) scales its tolerance for those numbers by. Resumable:
    each code path's result is kept under ``results_dir``."""
    code_paths, twins = resolve_code_paths(code_paths, say)
    written = []
    for config in chosen_configs(scale.all_configs, scale.authors_configs, only, f"{scale.name} scale's nets"):
        path = Path(baselines_dir) / scale.name / f"{config.config_id}.json"
        doc = bl.load_baseline(path) if path.exists() else {}
        if not doc.get("spread"):
            raise FileNotFoundError(f"{path} holds no seed spread; write it first with `python -m lossbench baselines "
                                    f"--scale {scale.name} --spread --only {config.config_id}`")
        doc["spread"].update(_seed_jitter_entry(config, scale, doc, seeds, data=load_dataset(config, data_dir=data_dir),
                                                baselines_dir=baselines_dir, results_dir=results_dir, device=device,
                                                code_paths=code_paths, twins=twins, cache_dir=cache_dir,
                                                data_dir=data_dir, say=say))
        bl.write_baseline(path, doc)
        say(f"wrote the seed jitter of {path}")
        written.append(path)
    return written


def _code_path_nets(config: RunConfig, scale: Scale, doc: dict[str, Any], samples: dict[str, list[float]], *,
                    results_dir: Path, cache_dir: str | Path | None, code_paths: tuple[dict[str, str], ...],
                    say: Callable[[str], None]) -> dict[str, Any]:
    """Seed 0 trained and measured on each code path: ``code_paths`` (their values, weights, finals) and
    ``band`` (statistics over the seeds' ``samples`` and these)."""
    from .train import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    values: dict[str, list[float]] = {name: [] for name in doc["metrics"]}
    names, shas, finals = [], [], []
    for env in code_paths:
        name = code_path_name(env)
        out = run_code_path(env, "train_study", dict(
            config=config.replace(seed=0).to_dict(), scale=scale_job(scale),
            results_dir=str(results_dir / "codepath-nets" / name), cache_dir=str(root / f"codepath-{name}")))
        names.append(name)
        shas.append(out["weights_sha256"])
        finals.append({k: bl.round_sig(v) for k, v in out["final"].items()})
        for metric in doc["metrics"]:
            values[metric].append(float(out["metrics"].get(metric, float("nan"))))
        say(f"{config.config_id}: trained and measured on code path {name}")
    everything = {m: [*samples.get(m, []), *values[m]] for m in doc["metrics"]}
    return {"code_paths": {"variants": names, "weights_sha256": shas, "finals": finals,
                           "metrics": {m: [bl.round_sig(v, bl.VALUE_DIGITS) for v in vs] for m, vs in values.items()}},
            "band": bl.spread_stats(everything)}


def _per_seed(doc: dict[str, Any], seeds: Iterable[int], measure: Callable[[int], tuple[dict[str, float], str]]
              ) -> tuple[dict[str, list[float]], list[str | None]]:
    """Every metric of ``doc`` at each training seed (seed 0: the file's own values; others:
    ``measure(seed)`` -> (metrics, weights sha256)) and the weights' sha256 of each."""
    samples: dict[str, list[float]] = {}
    shas: list[str | None] = []
    for seed in seeds:
        if seed == 0:
            values, sha = {k: v["value"] for k, v in doc["metrics"].items()}, doc["source"].get("weights_sha256")
        else:
            values, sha = measure(seed)
        shas.append(sha)
        for k in doc["metrics"]:
            samples.setdefault(k, []).append(float(values.get(k, float("nan"))))
    return samples, shas


def _code_path_band(config: RunConfig, scale: Scale, what: str, samples: dict[str, list[float]], *,
                    results_dir: Path, cache_dir: str | Path | None, code_paths: tuple[dict[str, str], ...],
                    say: Callable[[str], None]) -> dict[str, Any]:
    """Like :func:`_code_path_nets`, for a main-job file of a retrained scale (``what``: ``eig_map`` or
    ``trajectory``): seed 0 trained and the file's numbers computed on each code path."""
    from .train import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    values: dict[str, list[float]] = {name: [] for name in samples}
    names, shas = [], []
    for env in code_paths:
        name = code_path_name(env)
        out = run_code_path(env, "train_measure", dict(
            config=config.replace(seed=0).to_dict(), scale=scale_job(scale), what=what,
            path=str(results_dir / "codepath-nets" / name / config.config_id / f"{what}.h5"),
            cache_dir=str(root / f"codepath-{name}")))
        names.append(name)
        shas.append(out["weights_sha256"])
        for metric in samples:
            values[metric].append(float(out["metrics"].get(metric, float("nan"))))
        say(f"{config.config_id}: {what} trained and measured on code path {name}")
    everything = {m: [*samples[m], *values[m]] for m in samples}
    return {"code_paths": {"variants": names, "weights_sha256": shas,
                           "metrics": {m: [bl.round_sig(v, bl.VALUE_DIGITS) for v in vs] for m, vs in values.items()}},
            "band": bl.spread_stats(everything)}


def write_trajectory_spread(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                            seeds: tuple[int, ...], cache_dir: str | Path | None = None,
                            data_dir: str | Path | None = None, say: Callable[[str], None] = _say,
                            code_paths: tuple[dict[str, str], ...] | None = None) -> list[Path]:
    """The spread of the PCA-plane surface's file at a retrained scale: its numbers at each training seed
    and on each code path (``spread.band``), the band a retrained net on another machine is held to. A
    shipped scale's file needs none (its net is the same everywhere)."""
    code_paths = available_code_paths() if code_paths is None else tuple(code_paths)
    if scale.shipped:
        raise ValueError(f"the {scale.name} scale ships its nets: its trajectory file is checked at tol everywhere")
    config = find_config(scale.name, depth=20, shortcut=True, batch_size=128)
    path = Path(baselines_dir) / scale.name / "trajectory" / f"{config.config_id}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; write it first with `python -m lossbench baselines --scale "
                                f"{scale.name} --main-job-files`")
    doc = bl.load_baseline(path)

    def measure(seed: int) -> tuple[dict[str, float], str]:
        cfg = config.replace(seed=seed)
        net = net_of(cfg, scale, baselines_dir=baselines_dir, device=device, cache_dir=cache_dir, data_dir=data_dir)
        say(f"{config.config_id}: trajectory at seed {seed}")
        return trajectory_metrics(results_dir / "spread" / f"seed{seed}" / "plane.h5", net.model, net,
                                  load_dataset(cfg, data_dir=data_dir), scale), weights_sha(net)

    samples, shas = _per_seed(doc, seeds, measure)
    doc["spread"] = {"seeds": list(seeds), "metrics": bl.spread_stats(samples, keep_values=True), "weights_sha256": shas}
    if code_paths:
        doc["spread"].update(_code_path_band(config, scale, "trajectory", samples, results_dir=results_dir,
                                             cache_dir=cache_dir, code_paths=code_paths, say=say))
    bl.write_baseline(path, doc)
    say(f"wrote the spread of {path}")
    return [path]


def write_eigmap_baselines(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                           variants: tuple[str, ...], spread_seeds: tuple[int, ...] | None = None,
                           cache_dir: str | Path | None = None, data_dir: str | Path | None = None,
                           only: Iterable[str] | None = None, say: Callable[[str], None] = _say,
                           code_paths: tuple[dict[str, str], ...] | None = None) -> list[Path]:
    """Eigen-ratio map summaries of the scale's ResNet-56 pairs at batch 128 (:attr:`Scale.eig_map_configs`;
    the map's plane: direction seed 0): value and recompute tolerance over ``variants`` and ``code_paths``
    (default: every one this CPU can take), or with ``spread_seeds`` every summary at each training seed;
    ``only`` these config ids of them (e.g. the one whose seeds are shipped)."""
    code_paths, twins = resolve_code_paths(code_paths, say)
    authors = [c for c in scale.authors_configs if scale.has_eig_map(c)]
    written = []
    for config in chosen_configs(scale.eig_map_configs, authors, only, "eigen-ratio maps"):
        if scale.shipped and spread_seeds is None and config.config_id not in shipped_ids(baselines_dir, scale.name):
            say(f"skip the eigen-ratio map of {config.config_id}: not shipped yet")
            continue
        path = Path(baselines_dir) / scale.name / "eigmap" / f"{config.config_id}.json"
        old = _previous(path, say)
        data = load_dataset(config, data_dir=data_dir)
        if spread_seeds is not None:
            if not old:
                raise FileNotFoundError(f"{path} does not exist; write it first without --spread")

            def measure(seed: int, config=config, data=data) -> tuple[dict[str, float], str]:
                net = net_of(config.replace(seed=seed), scale, baselines_dir=baselines_dir, device=device,
                             cache_dir=cache_dir, data_dir=data_dir)
                map_path = results_dir / "spread" / f"seed{seed}" / config.config_id / "eig-map.h5"
                return eig_map_summary(map_path, net.model, data, scale)[1], weights_sha(net)

            samples, shas = _per_seed(old, spread_seeds, measure)
            old["spread"] = {"seeds": list(spread_seeds), "metrics": bl.spread_stats(samples, keep_values=True),
                             "weights_sha256": shas}
            if not scale.shipped and code_paths:
                old["spread"].update(_code_path_band(config, scale, "eig_map", samples, results_dir=results_dir,
                                                     cache_dir=cache_dir, code_paths=code_paths, say=say))
            bl.write_baseline(path, old)
            say(f"wrote the spread of {path}")
            written.append(path)
            continue
        net = net_of(config, scale, baselines_dir=baselines_dir, device=device, cache_dir=cache_dir, data_dir=data_dir)
        # every point's eigenvalues where the main job recomputes part of the map (the rest it takes from here)
        points = scale.eig_map_check > 1
        summary, jitter, measured = eig_map_jitter(config, scale, model=net.model, data=data, results_dir=results_dir,
                                                   variants=variants, points=points)
        kwargs = dict(config=config.to_dict(), scale=scale_job(scale), baselines_dir=str(baselines_dir),
                      path=str(Path(results_dir) / "codepaths" / config.config_id / "eig-map.h5"),
                      cache_dir=None if cache_dir is None else str(cache_dir), points=points)
        cp_jitter, cp_measured, _ = code_path_jitter(
            "eig_map", kwargs, summary, code_paths=code_paths, twins=twins, say=say, weights=weights_sha(net),
            done_dir=Path(results_dir) / "codepaths" / config.config_id / "eig-map-done")
        jitter, measured = _merge_jitter(jitter, cp_jitter), {**measured, **cp_measured}
        doc = bl.make_baseline(
            f"eigmap/{config.config_id}", scale.name, summary,
            source=bl.provenance(str(device), weights_sha256=weights_sha(net)),
            tolerances=bl.recompute_tolerances(summary, jitter),
            extra={"config_hash": config.config_hash, **_kept(old, "spread"),
                   "jitter": {k: bl.round_sig(v, 3) for k, v in jitter.items()}, "jitter_variants": sorted(measured),
                   **_twins_entry(twins), "map": scale.eig_map,
                   "hessian": {"samples": scale.eig_samples, "batch": scale.eig_samples,
                               "max_iter": scale.eig_max_iter, "tol": CURVATURE["tol"]},
                   "tolerance_method": TOL_METHOD.format(factor=bl.SAFETY_FACTOR, subsets=1)},
        )
        bl.write_baseline(path, doc)
        say(f"wrote {path}")
        written.append(path)
    return written


#: The in-process variants of :func:`_jitter_of`, as ``jitter_variants`` names them.
PLAIN_VARIANTS = ("dtype=float64", "repeat", "threads=2")


def _jitter_of(compute: Callable[[nn.Module, ImageData], dict[str, float]], models: tuple[nn.Module, ...],
               data: ImageData) -> tuple[dict[str, float], dict[str, float]]:
    """(values, largest deviation) of ``compute(models, data)`` over a float64 recompute, 2 threads and a
    repeat (the in-process recompute variants that apply to a file of the main job that is not a surface
    of one net; the code paths are measured by :func:`code_path_jitter`)."""
    with _with_threads(1):
        base = compute(models, data)
    variants = {}
    with _with_threads(1):
        variants["dtype=float64"] = compute(tuple(copy.deepcopy(m).double() for m in models), data.to(torch.float64))
    with _with_threads(2):
        variants["threads=2"] = compute(models, data)
    with _with_threads(1):
        variants["repeat"] = compute(models, data)
    return base, _max_deviation(base, variants)


def write_main_job_file_baselines(scale: Scale, *, baselines_dir: str | Path, results_dir: Path,
                                  device: torch.device, cache_dir: str | Path | None = None,
                                  data_dir: str | Path | None = None, say: Callable[[str], None] = _say,
                                  code_paths: tuple[dict[str, str], ...] | None = None) -> list[Path]:
    """The baselines of the main job's other results: the interpolations of the filter-normalisation
    experiment (loss and accuracy along alpha, BatchNorm statistics interpolated) and the surface on the
    PCA plane of ResNet-20's path (``interpolation/sgd-wd<wd>.json``, ``trajectory/<config_id>.json``);
    their tolerances cover ``code_paths`` too (default: every one this CPU can take)."""
    code_paths, twins = resolve_code_paths(code_paths, say)
    where = dict(scale=scale_job(scale), baselines_dir=str(baselines_dir), cache_dir=None if cache_dir is None else str(cache_dir))
    names = sorted([*PLAIN_VARIANTS, *map(code_path_name, code_paths)])
    written = []
    common = dict(baselines_dir=baselines_dir, device=device, cache_dir=cache_dir, data_dir=data_dir)
    for wd in sorted({c.weight_decay for c in scale.normalization_configs}):
        small, large = sorted((c for c in scale.normalization_configs if c.weight_decay == wd), key=lambda c: c.batch_size)
        a, b = net_of(small, scale, **common), net_of(large, scale, **common)
        data = load_dataset(small, data_dir=data_dir)
        folder = results_dir / "interpolation"

        def interp(models, d, folder=folder):
            return interpolation_metrics(folder / "interp.h5", models[0], models[1], d, scale)

        values, jitter = _jitter_of(interp, (a.model, b.model), data)
        cp_jitter = code_path_jitter("interpolation", dict(small=small.to_dict(), large=large.to_dict(),
                                                           path=str(folder / "codepaths" / "interp.h5"), **where),
                                     values, code_paths=code_paths, twins=twins, say=say)[0]
        name = f"interpolation/sgd-wd{wd:g}"
        written.append(_write_plain(scale, name, values, _merge_jitter(jitter, cp_jitter), baselines_dir=baselines_dir,
                                    device=device, twins=twins, extra={"from": small.config_id, "to": large.config_id,
                                                          "weights_sha256": [weights_sha(a), weights_sha(b)],
                                                          "jitter_variants": names}))
        say(f"wrote {written[-1]}")
    config = find_config(scale.name, depth=20, shortcut=True, batch_size=128)
    net = net_of(config, scale, **common)
    data = load_dataset(config, data_dir=data_dir)

    def plane(models, d):
        return trajectory_metrics(results_dir / "trajectory" / "plane.h5", models[0], net, d, scale)

    values, jitter = _jitter_of(plane, (net.model,), data)
    cp_jitter = code_path_jitter("trajectory", dict(config=config.to_dict(), **where,
                                                    path=str(results_dir / "trajectory" / "codepaths" / "plane.h5")),
                                 values, code_paths=code_paths, twins=twins, say=say)[0]
    written.append(_write_plain(scale, f"trajectory/{config.config_id}", values, _merge_jitter(jitter, cp_jitter),
                                baselines_dir=baselines_dir, device=device, twins=twins,
                                extra={"config_hash": config.config_hash, "weights_sha256": weights_sha(net),
                                       "jitter_variants": names}))
    say(f"wrote {written[-1]}")
    return written


def write_spectrum_baselines(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                             cache_dir: str | Path | None = None, data_dir: str | Path | None = None,
                             only: Iterable[str] | None = None, say: Callable[[str], None] = _say,
                             code_paths: tuple[dict[str, str], ...] | None = None, subsets: int = 2,
                             spread_seeds: tuple[int, ...] | None = None) -> list[Path]:
    """The Hessian spectra of the scale's matrix (``spectrum/<config_id>.json``).

    Each file holds the summary numbers of :func:`~lossbench.reproduce.spectrum_summary_metrics` on image
    subset 0 (``summary``) with their values on each of ``subsets`` disjoint subsets (``sampling``: the
    sd is one subset's sampling error); the part the main job recomputes (the top eigenvalues on subset
    0) as ``metrics`` with recompute tolerances over float64, 2 threads, a repeat and ``code_paths``
    (default: every one this CPU can take); what the report draws: subset 0's SLQ nodes and weights
    (``density``), its top eigenpairs' values (``top``) and the train loss on the plane of the top two
    eigenvectors (``plane``, :func:`~lossbench.reproduce.eigenvector_plane`).

    With ``spread_seeds``: the summary at each of those training seeds (the shipped seed nets), added
    to the existing files as ``spread`` (the claims' seed-to-seed error)."""
    code_paths, twins = resolve_code_paths(code_paths, say)
    names = sorted([*PLAIN_VARIANTS, *map(code_path_name, code_paths)])
    written = []
    others = (*scale.authors_configs, *(c for c in scale.configs if c not in scale.spectrum_configs))
    for config in chosen_configs(scale.spectrum_configs, others, only, f"{scale.name} scale's spectra"):
        if scale.shipped and config.config_id not in shipped_ids(baselines_dir, scale.name):
            say(f"skip the spectrum of {config.config_id}: not shipped yet")
            continue
        path = Path(baselines_dir) / scale.name / "spectrum" / f"{config.config_id}.json"
        data = load_dataset(config, data_dir=data_dir)
        if spread_seeds is not None:
            written.append(_spectrum_spread(path, config, scale, data, spread_seeds, baselines_dir=baselines_dir,
                                            device=device, cache_dir=cache_dir, data_dir=data_dir, say=say))
            continue
        old = _previous(path, say)
        net = net_of(config, scale, baselines_dir=baselines_dir, device=device, cache_dir=cache_dir, data_dir=data_dir)
        runs = []
        for k in range(subsets):
            metrics, spectrum, top = spectrum_run(net.model, data, scale, subset=k)
            runs.append(metrics)
            if k == 0:
                first = (spectrum, top)
            say(f"{config.config_id}: spectrum on image subset {k} done")
        spectrum, top = first
        try:
            plane = eigenvector_plane(Path(results_dir) / "spectrum" / config.config_id / "eig-plane.h5", net.model,
                                      data, scale, top)
            say(f"{config.config_id}: the plane of the top two eigenvectors done")
        except ValueError as exc:  # unconverged vectors or a non-positive top: no plane, and the file says why
            plane = {"missing": str(exc)}
        values, jitter = _jitter_of(lambda models, d: spectrum_check_metrics(models[0], d, scale), (net.model,), data)
        kwargs = dict(config=config.to_dict(), scale=scale_job(scale), baselines_dir=str(baselines_dir),
                      cache_dir=None if cache_dir is None else str(cache_dir))
        cp_jitter = code_path_jitter("spectrum_top", kwargs, values, code_paths=code_paths, twins=twins, say=say)[0]
        written.append(_write_plain(scale, f"spectrum/{config.config_id}", values, _merge_jitter(jitter, cp_jitter),
                                    baselines_dir=baselines_dir, device=device, twins=twins,
                                    extra={"config_hash": config.config_hash, "weights_sha256": weights_sha(net),
                                           "jitter_variants": names, **_kept(old, "spread"),
                                           "summary": {k: bl.round_sig(v, 8) for k, v in runs[0].items()},
                                           "sampling": _sampling_entries(subset_sampling(
                                               runs, images=scale.spectrum_samples)),
                                           "spectrum": {"samples": scale.spectrum_samples,
                                                        "probes": scale.spectrum_probes,
                                                        "steps": scale.spectrum_steps, "subsets": subsets},
                                           "density": {"dim": spectrum.dim,
                                                       "nodes": [[bl.round_sig(x, bl.VALUE_DIGITS) for x in row] for row in spectrum.nodes],
                                                       "weights": [[bl.round_sig(x, bl.VALUE_DIGITS) for x in row]
                                                                   for row in spectrum.weights]},
                                           "top": {"values": [bl.round_sig(x, bl.VALUE_DIGITS) for x in top.values],
                                                   "converged": [bool(c) for c in top.converged],
                                                   "residuals": [bl.round_sig(x, 3) for x in top.residuals]},
                                           "plane": _rounded_plane(plane)}))
        say(f"wrote {written[-1]}")
    return written


def _rounded_plane(plane: dict[str, Any]) -> dict[str, Any]:
    def r(x):
        return [r(v) for v in x] if isinstance(x, list) else bl.round_sig(x, bl.VALUE_DIGITS) if isinstance(
            x, float) else x

    return {k: r(v) for k, v in plane.items()}


def _spectrum_spread(path: Path, config: RunConfig, scale: Scale, data: ImageData, seeds: tuple[int, ...], *,
                     baselines_dir: str | Path, device: torch.device, cache_dir: str | Path | None,
                     data_dir: str | Path | None, say: Callable[[str], None]) -> Path:
    """The spectrum summary of ``config`` at each training seed of ``seeds`` (seed 0: the file's own),
    written into the file's ``spread``."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; write it first without --spread")
    doc = bl.load_baseline(path)
    samples: dict[str, list[float]] = {}
    shas: list[str | None] = []
    for seed in seeds:
        if seed == 0:
            values, sha = doc["summary"], doc.get("weights_sha256") or doc["source"].get("weights_sha256")
        else:
            net = net_of(config.replace(seed=seed), scale, baselines_dir=baselines_dir, device=device,
                         cache_dir=cache_dir, data_dir=data_dir)
            values, sha = spectrum_summary_metrics(net.model, data, scale), weights_sha(net)
            say(f"{config.config_id}: spectrum at seed {seed} done")
        shas.append(sha)
        for name in doc["summary"]:
            samples.setdefault(name, []).append(float(values.get(name, float("nan"))))
    doc["spread"] = {"seeds": list(seeds), "metrics": bl.spread_stats(samples, keep_values=True),
                     "weights_sha256": shas}
    bl.write_baseline(path, doc)
    say(f"wrote the spread of {path}")
    return path


def _write_plain(scale: Scale, name: str, values: dict[str, float], jitter: dict[str, float], *,
                 baselines_dir: str | Path, device: torch.device, extra: dict[str, Any],
                 twins: dict[str, str] | None = None) -> Path:
    path = Path(baselines_dir) / scale.name / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = bl.make_baseline(name, scale.name, values, source=bl.provenance(str(device)),
                           tolerances=bl.recompute_tolerances(values, jitter),
                           extra={**extra, **_twins_entry(twins),
                                  "jitter": {k: bl.round_sig(v, 3) for k, v in jitter.items()},
                                  "tolerance_method": "tol: {:g} x the largest deviation over a float64 recompute, "
                                                      "2 threads, a repeated run and other machines' code paths "
                                                      "(jitter_variants, each in a subprocess), or the per-kind "
                                                      "floor".format(bl.SAFETY_FACTOR)})
    bl.write_baseline(path, doc)
    return path


def write_connect_baselines(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                            cache_dir: str | Path | None = None, data_dir: str | Path | None = None,
                            only: Iterable[str] | None = None, say: Callable[[str], None] = _say,
                            code_paths: tuple[dict[str, str], ...] | None = None) -> list[Path]:
    """The mode-connecting curves of the scale's ``connect_configs`` (``connect/<config_id>.json``):

    * per seed pair of :data:`~lossbench.reproduce.CONNECT_PAIRS`, a curve trained between the two
      shipped nets (:func:`~lossbench.reproduce.connection_curve`, resumable under ``results_dir``):
      the barriers of the line and the curve with their sampling errors (the claim's numbers), and
      the control point shipped beside the file (``connect/<config>-s<i>-to-s<j>.pt``, sha256 recorded);
    * the paths of the first pair at every t (the report draws them);
    * what the main job recomputes, the first pair's curve at ``connect_check_t``
      (:func:`~lossbench.reproduce.curve_check_metrics`), with tolerances from a float64 recompute,
      2 threads, a repeat and ``code_paths`` (default: every one this CPU can take).
    """
    from .connect import parameters_of
    from .reference_nets import ship_control_point
    from .reproduce import CONNECT_PAIRS, connection_curve, curve_check_metrics

    code_paths, twins = resolve_code_paths(code_paths, say)
    names = sorted([*PLAIN_VARIANTS, *map(code_path_name, code_paths)])
    common = dict(baselines_dir=baselines_dir, device=device, cache_dir=cache_dir, data_dir=data_dir)
    folder = Path(baselines_dir) / scale.name / "connect"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for config in scale.connect_configs:
        if only and config.config_id not in set(only):
            continue
        nets = {s: net_of(config.replace(seed=s), scale, **common) for s in sorted({s for p in CONNECT_PAIRS for s in p})}
        data = load_dataset(config, data_dir=data_dir)
        pairs, first = [], None
        for i, j in CONNECT_PAIRS:
            say(f"{config.config_id}: the curve between seeds {i} and {j}")
            model = copy.deepcopy(nets[i].model)
            name = f"{config.replace(seed=i).config_id}-to-s{j}"  # as `connect --seeds i j` names it
            c = connection_curve(results_dir / "connect" / f"{name}.h5", model,
                                 parameters_of(nets[i].model), parameters_of(nets[j].model), data, scale,
                                 batch_size=config.batch_size, attrs={"config_id": config.config_id, "seeds": [i, j]})
            control = folder / f"{name}.pt"
            sha = ship_control_point(c["control"], control)
            meta = c["metadata"]
            pairs.append({"seeds": [i, j], "barrier": meta["barrier"], "barrier_error": meta["barrier_error"],
                          "barrier_parts": meta["barrier_parts"], "control_file": control.name,
                          "control_sha256": sha, "weights_sha256": [weights_sha(nets[i]), weights_sha(nets[j])],
                          "curve_training": meta["connect"]})
            if first is None:
                first = (i, j, c)
        i, j, c = first
        theta_a, theta_b = parameters_of(nets[i].model), parameters_of(nets[j].model)

        def check(models, d, theta_a=theta_a, theta_b=theta_b, control=c["control"]):
            # curve_check_metrics casts the three points to the model's dtype (the float64 variant)
            return curve_check_metrics(models[0], theta_a, theta_b, control, d, scale)

        values, jitter = _jitter_of(check, (copy.deepcopy(nets[i].model),), data)
        where = dict(scale=scale_job(scale), baselines_dir=str(baselines_dir),
                     cache_dir=None if cache_dir is None else str(cache_dir))
        cp_jitter = code_path_jitter("connection", dict(config=config.to_dict(), **where, seeds=[i, j],
                                                         control_file=str(folder / pairs[0]["control_file"]),
                                                         control_sha256=pairs[0]["control_sha256"]),
                                     values, code_paths=code_paths, twins=twins, say=say)[0]
        paths = {name: {k: [bl.round_sig(float(v), bl.VALUE_DIGITS) for v in arr] for k, arr in p.items()}
                 for name, p in c["paths"].items()}
        written.append(_write_plain(scale, f"connect/{config.config_id}", values, _merge_jitter(jitter, cp_jitter),
                                    baselines_dir=baselines_dir, device=device, twins=twins,
                                    extra={"config_hash": config.config_hash, "checked_pair": [i, j],
                                           "weights_sha256": pairs[0]["weights_sha256"] + [pairs[0]["control_sha256"]],
                                           "pairs": pairs, "paths": {"t": [float(t) for t in c["t"]], **paths},
                                           "jitter_variants": names}))
        say(f"wrote {written[-1]}")
    return written
