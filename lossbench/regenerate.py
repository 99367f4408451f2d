"""Writing ``baselines/<scale>/``: each net's values with measured recompute tolerances, the sampling
error of its Hessian numbers, the spread over training seeds, the eigen-ratio map summaries of the
ResNet-56 pair, the interpolations and the PCA-plane surface.

What ``python -m lossbench baselines`` runs; the file format and the comparison live in
:mod:`lossbench.baselines`, the measurements in :mod:`lossbench.reproduce`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import baselines as bl
from .config import RunConfig, Scale, find_config
from .data import ImageData, load_dataset
from .reference_nets import load_reference, shipped_ids, state_sha256
from .reproduce import (
    CURVATURE,
    HESSIAN_SUBSETS,
    TOL_METHOD,
    _max_deviation,
    _with_threads,
    converged,
    curvature_sampling,
    eig_map_jitter,
    eig_map_summary,
    interpolation_metrics,
    recompute_jitter,
    study_net,
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


def write_recompute_baselines(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                              only: Iterable[str] | None = None, cache_dir: str | Path | None = None,
                              data_dir: str | Path | None = None, say: Callable[[str], None] = _say) -> list[Path]:
    """Value, recompute tolerance and (Hessian numbers) sampling error of every net of ``scale`` (or
    ``only`` these ids); keeps a stored spread."""
    wanted = set(only) if only else None
    written = []
    for config in scale.all_configs:
        if wanted and config.config_id not in wanted:
            continue
        if scale.shipped and config.config_id not in shipped_ids(baselines_dir, scale.name):
            say(f"skip {config.config_id}: not shipped in {baselines_dir}/{scale.name}/nets yet")
            continue
        path = Path(baselines_dir) / scale.name / f"{config.config_id}.json"
        old = _previous(path, say)
        data = load_dataset(config, data_dir=data_dir)
        net = net_of(config, scale, baselines_dir=baselines_dir, device=device, cache_dir=cache_dir, data_dir=data_dir)
        checkpoints = None if scale.shipped else net.checkpoints
        base, jitter, _ = recompute_jitter(config, scale, model=net.model, data=data, results_dir=results_dir,
                                           checkpoints=checkpoints)
        if scale.shipped:  # every direction pair, the stored PCA, the lines
            base, jitter = all_pairs_metrics(config, scale, net=net, data=data, results_dir=results_dir,
                                             base=base, jitter=jitter)
        sampling = curvature_sampling(net.model, data, scale)
        doc = bl.make_baseline(
            config.config_id, scale.name, base, source=bl.provenance(str(device), weights_sha256=weights_sha(net)),
            tolerances=bl.recompute_tolerances(base, jitter),
            extra={"config_hash": config.config_hash, "final": {k: bl.round_sig(v) for k, v in net.final.items()},
                   "converged": converged(net.final), **_kept(old, "spread"),
                   "jitter": {k: bl.round_sig(v, 3) for k, v in jitter.items()},
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
                 data_dir: str | Path | None = None, say: Callable[[str], None] = _say) -> list[Path]:
    """Add every metric at each training seed to existing baseline files (``spread``): seed 0's values are
    the baseline's own; the others are measured on the seed nets (shipped to ``seed-nets/`` at a shipped
    scale, trained otherwise) exactly as the suite measures seed 0."""
    wanted = set(only) if only else None
    written = []
    for config in scale.all_configs:
        if wanted and config.config_id not in wanted:
            continue
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
        bl.write_baseline(path, doc)
        say(f"wrote the spread of {path}")
        written.append(path)
    return written


def write_eigmap_baselines(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                           variants: tuple[str, ...], spread_seeds: tuple[int, ...] | None = None,
                           cache_dir: str | Path | None = None, data_dir: str | Path | None = None,
                           only: Iterable[str] | None = None, say: Callable[[str], None] = _say) -> list[Path]:
    """Eigen-ratio map summaries of the ResNet-56 pair at batch 128 (the map's plane: direction seed 0):
    value and recompute tolerance over ``variants``, or with ``spread_seeds`` every summary at each
    training seed; ``only`` these config ids of the pair (e.g. the one whose seeds are shipped)."""
    wanted = set(only) if only else None
    pair = [find_config(scale.name, depth=56, shortcut=shortcut, batch_size=128) for shortcut in (True, False)]
    if wanted is not None and not wanted & {c.config_id for c in pair}:
        raise ValueError(f"--only {sorted(wanted)} names neither map of the pair: "
                         f"{', '.join(c.config_id for c in pair)}")
    written = []
    for config in pair:
        if wanted is not None and config.config_id not in wanted:
            continue
        if scale.shipped and spread_seeds is None and config.config_id not in shipped_ids(baselines_dir, scale.name):
            say(f"skip the eigen-ratio map of {config.config_id}: not shipped yet")
            continue
        path = Path(baselines_dir) / scale.name / "eigmap" / f"{config.config_id}.json"
        old = _previous(path, say)
        data = load_dataset(config, data_dir=data_dir)
        if spread_seeds is not None:
            if not old:
                raise FileNotFoundError(f"{path} does not exist; write it first without --spread")
            samples: dict[str, list[float]] = {}
            shas = []
            for seed in spread_seeds:
                if seed == 0:
                    summary = {k: v["value"] for k, v in old["metrics"].items()}
                    shas.append(old["source"].get("weights_sha256"))
                else:
                    net = net_of(config.replace(seed=seed), scale, baselines_dir=baselines_dir, device=device,
                                 cache_dir=cache_dir, data_dir=data_dir)
                    map_path = results_dir / "spread" / f"seed{seed}" / config.config_id / "eig-map.h5"
                    summary = eig_map_summary(map_path, net.model, data, scale)[1]
                    shas.append(weights_sha(net))
                for k in old["metrics"]:
                    samples.setdefault(k, []).append(float(summary.get(k, float("nan"))))
            old["spread"] = {"seeds": list(spread_seeds), "metrics": bl.spread_stats(samples, keep_values=True),
                             "weights_sha256": shas}
            bl.write_baseline(path, old)
            say(f"wrote the spread of {path}")
            written.append(path)
            continue
        net = net_of(config, scale, baselines_dir=baselines_dir, device=device, cache_dir=cache_dir, data_dir=data_dir)
        summary, jitter, measured = eig_map_jitter(config, scale, model=net.model, data=data, results_dir=results_dir,
                                                   variants=variants)
        doc = bl.make_baseline(
            f"eigmap/{config.config_id}", scale.name, summary,
            source=bl.provenance(str(device), weights_sha256=weights_sha(net)),
            tolerances=bl.recompute_tolerances(summary, jitter),
            extra={"config_hash": config.config_hash, **_kept(old, "spread"),
                   "jitter": {k: bl.round_sig(v, 3) for k, v in jitter.items()}, "jitter_variants": sorted(measured),
                   "map": scale.eig_map,
                   "hessian": {"samples": scale.eig_samples, "batch": scale.eig_samples,
                               "max_iter": scale.eig_max_iter, "tol": CURVATURE["tol"]},
                   "tolerance_method": TOL_METHOD.format(factor=bl.SAFETY_FACTOR, subsets=1)},
        )
        bl.write_baseline(path, doc)
        say(f"wrote {path}")
        written.append(path)
    return written


def _jitter_of(compute: Callable[[nn.Module, ImageData], dict[str, float]], models: tuple[nn.Module, ...],
               data: ImageData) -> tuple[dict[str, float], dict[str, float]]:
    """(values, largest deviation) of ``compute(models, data)`` over a float64 recompute, 2 threads and a
    repeat (the recompute variants that apply to a file of the main job that is not a surface of one net)."""
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
                                  data_dir: str | Path | None = None, say: Callable[[str], None] = _say) -> list[Path]:
    """The baselines of the main job's other results: the interpolations of the filter-normalisation
    experiment (loss and accuracy along alpha, BatchNorm statistics interpolated) and the surface on the
    PCA plane of ResNet-20's path (``interpolation/sgd-wd<wd>.json``, ``trajectory/<config_id>.json``)."""
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
        name = f"interpolation/sgd-wd{wd:g}"
        written.append(_write_plain(scale, name, values, jitter, baselines_dir=baselines_dir, device=device,
                                    extra={"from": small.config_id, "to": large.config_id,
                                           "weights_sha256": [weights_sha(a), weights_sha(b)]}))
        say(f"wrote {written[-1]}")
    config = find_config(scale.name, depth=20, shortcut=True, batch_size=128)
    net = net_of(config, scale, **common)
    data = load_dataset(config, data_dir=data_dir)

    def plane(models, d):
        return trajectory_metrics(results_dir / "trajectory" / "plane.h5", models[0], net, d, scale)

    values, jitter = _jitter_of(plane, (net.model,), data)
    written.append(_write_plain(scale, f"trajectory/{config.config_id}", values, jitter, baselines_dir=baselines_dir,
                                device=device, extra={"config_hash": config.config_hash,
                                                      "weights_sha256": weights_sha(net)}))
    say(f"wrote {written[-1]}")
    return written


def _write_plain(scale: Scale, name: str, values: dict[str, float], jitter: dict[str, float], *,
                 baselines_dir: str | Path, device: torch.device, extra: dict[str, Any]) -> Path:
    path = Path(baselines_dir) / scale.name / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = bl.make_baseline(name, scale.name, values, source=bl.provenance(str(device)),
                           tolerances=bl.recompute_tolerances(values, jitter),
                           extra={**extra, "jitter": {k: bl.round_sig(v, 3) for k, v in jitter.items()},
                                  "tolerance_method": "tol: {:g} x the largest deviation over a float64 recompute, "
                                                      "2 threads and a repeated run, or the per-kind floor".format(
                                                          bl.SAFETY_FACTOR)})
    bl.write_baseline(path, doc)
    return path
