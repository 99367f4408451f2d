"""Writing ``baselines/<scale>/``: each net's values with measured recompute tolerances, the seed
spread beside them, and the eigen-ratio map summaries of the ResNet-56 pair.

What ``python -m lossbench baselines`` runs; the file format and the comparison live in
:mod:`lossbench.baselines`, the measurements in :mod:`lossbench.reproduce`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import baselines as bl
from .config import RunConfig, Scale, find_config
from .data import load_dataset
from .reference_nets import load_reference, shipped_ids, state_sha256
from .reproduce import (
    CURVATURE,
    TOL_METHOD,
    converged,
    derive_spread,
    eig_map_jitter,
    eig_map_summary,
    recompute_jitter,
    study_net,
)
from .train import train


def _say(message: str) -> None:
    print(message, flush=True)


def baseline_net(config: RunConfig, scale: Scale, *, baselines_dir: str | Path, device: torch.device,
                 cache_dir: str | Path | None = None, data_dir: str | Path | None = None
                 ) -> tuple[nn.Module, dict[str, float], list[Path] | None, str, Any]:
    """(model, final, checkpoints or None, weights sha256, the ReferenceNet or None) of a config: the
    shipped reference net where the scale ships it, else the cached (re)trained one."""
    if config.config_id in shipped_ids(baselines_dir, scale.name):
        ref = load_reference(config.config_id, baselines_dir, scale.name, device=device)
        return ref.model, ref.final, None, ref.provenance["state_sha256"], ref
    result = train(config, device=device, cache_dir=cache_dir, data_dir=data_dir)
    return result.model, result.final, result.checkpoints, state_sha256(result.model.state_dict()), None


def all_pairs_metrics(config: RunConfig, scale: Scale, *, net, data, results_dir: Path, base: dict[str, float],
                      jitter: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """A shipped net's baseline covers every direction pair, the PCA and the 1D lines (what the main job
    checks; ``net`` is its :class:`~lossbench.reference_nets.ReferenceNet`). The jitter is measured on pair 0; a later pair's metric gets pair 0's relative jitter; the
    stored PCA is exact (jitter 0); the lines get their kind's floor."""
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


def _kept_spread(old: dict[str, Any]) -> dict[str, Any]:
    return {"spread": old.get("spread", {}), **({"spread_seeds": old["spread_seeds"]} if "spread_seeds" in old else {})}


def write_recompute_baselines(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                              only: Iterable[str] | None = None, cache_dir: str | Path | None = None,
                              data_dir: str | Path | None = None, say: Callable[[str], None] = _say) -> list[Path]:
    """Value and recompute tolerance of every net of ``scale`` (or ``only`` these ids); keeps a stored spread."""
    wanted = set(only) if only else None
    written = []
    for config in scale.all_configs:
        if wanted and config.config_id not in wanted:
            continue
        if scale.shipped and config.config_id not in shipped_ids(baselines_dir, scale.name):
            say(f"skip {config.config_id}: not shipped in {baselines_dir}/{scale.name}/nets yet")
            continue
        path = Path(baselines_dir) / scale.name / f"{config.config_id}.json"
        old = bl.load_baseline(path) if path.exists() else {}
        data = load_dataset(config, data_dir=data_dir)
        model, final, checkpoints, sha, ref = baseline_net(config, scale, baselines_dir=baselines_dir, device=device,
                                                           cache_dir=cache_dir, data_dir=data_dir)
        base, jitter, _ = recompute_jitter(config, scale, model=model, data=data, results_dir=results_dir,
                                           checkpoints=checkpoints)
        if ref is not None:  # a shipped net: every direction pair, its stored PCA, its lines
            base, jitter = all_pairs_metrics(config, scale, net=ref, data=data, results_dir=results_dir,
                                             base=base, jitter=jitter)
        doc = bl.make_baseline(
            config.config_id, scale.name, base, source=bl.provenance(str(device), weights_sha256=sha),
            tolerances=bl.recompute_tolerances(base, jitter),
            extra={"config_hash": config.config_hash, "final": {k: bl.round_sig(v) for k, v in final.items()},
                   "converged": converged(final), **_kept_spread(old),
                   "jitter": {k: bl.round_sig(v, 3) for k, v in jitter.items()},
                   "tolerance_method": TOL_METHOD.format(factor=bl.SAFETY_FACTOR)},
        )
        bl.write_baseline(path, doc)
        say(f"wrote {path}")
        written.append(path)
    return written


def write_spread(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                 seeds: tuple[int, ...], dir_seeds: tuple[int, ...], only: Iterable[str] | None = None,
                 cache_dir: str | Path | None = None, data_dir: str | Path | None = None,
                 say: Callable[[str], None] = _say) -> list[Path]:
    """Add the seed-to-seed spread (training seeds x direction seeds) to existing baseline files."""
    wanted = set(only) if only else None
    written = []
    for config in scale.all_configs:
        if wanted and config.config_id not in wanted:
            continue
        path = Path(baselines_dir) / scale.name / f"{config.config_id}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; write it first with `python -m lossbench baselines "
                                    f"--scale {scale.name}` (the recompute tolerances), then --spread")
        old = bl.load_baseline(path)
        _, samples = derive_spread(
            config, scale, seeds=seeds, dir_seeds=dir_seeds, data=load_dataset(config, data_dir=data_dir),
            results_dir=results_dir / "spread",
            train_fn=lambda c: train(c, device=device, cache_dir=cache_dir, data_dir=data_dir),
        )
        old["spread"] = bl.spread_stats(samples)
        old["spread_seeds"] = {"training": list(seeds), "direction": list(dir_seeds)}
        bl.write_baseline(path, old)
        say(f"wrote the spread of {path}")
        written.append(path)
    return written


def write_eigmap_baselines(scale: Scale, *, baselines_dir: str | Path, results_dir: Path, device: torch.device,
                           variants: tuple[str, ...], spread_seeds: tuple[int, ...] | None = None,
                           cache_dir: str | Path | None = None, data_dir: str | Path | None = None,
                           say: Callable[[str], None] = _say) -> list[Path]:
    """Eigen-ratio map summaries of the ResNet-56 pair at batch 128 (the map's plane: direction seed 0):
    value and recompute tolerance over ``variants``, or with ``spread_seeds`` the spread over training seeds."""
    written = []
    for shortcut in (True, False):
        config = find_config(scale.name, depth=56, shortcut=shortcut, batch_size=128)
        if scale.shipped and spread_seeds is None and config.config_id not in shipped_ids(baselines_dir, scale.name):
            say(f"skip the eigen-ratio map of {config.config_id}: not shipped yet")
            continue
        path = Path(baselines_dir) / scale.name / "eigmap" / f"{config.config_id}.json"
        old = bl.load_baseline(path) if path.exists() else {}
        data = load_dataset(config, data_dir=data_dir)
        if spread_seeds is not None:
            if not old:
                raise FileNotFoundError(f"{path} does not exist; write it first without --spread")
            samples: dict[str, list[float]] = {}
            for seed in spread_seeds:
                result = train(config.replace(seed=seed), device=device, cache_dir=cache_dir, data_dir=data_dir)
                map_path = results_dir / "spread" / f"seed{seed}" / result.config.config_id / "eig-map.h5"
                for k, v in eig_map_summary(map_path, result.model, data, scale)[1].items():
                    samples.setdefault(k, []).append(v)
            old["spread"] = bl.spread_stats(samples)
            old["spread_seeds"] = {"training": list(spread_seeds), "direction": [0]}
            bl.write_baseline(path, old)
            say(f"wrote the spread of {path}")
            written.append(path)
            continue
        model, _, _, sha, _ = baseline_net(config, scale, baselines_dir=baselines_dir, device=device,
                                        cache_dir=cache_dir, data_dir=data_dir)
        summary, jitter, measured = eig_map_jitter(config, scale, model=model, data=data, results_dir=results_dir,
                                                   variants=variants)
        doc = bl.make_baseline(
            f"eigmap/{config.config_id}", scale.name, summary,
            source=bl.provenance(str(device), weights_sha256=sha), tolerances=bl.recompute_tolerances(summary, jitter),
            extra={"config_hash": config.config_hash, **_kept_spread(old),
                   "jitter": {k: bl.round_sig(v, 3) for k, v in jitter.items()}, "jitter_variants": sorted(measured),
                   "map": scale.eig_map,
                   "hessian": {"samples": scale.eig_samples, "batch": scale.eig_samples,
                               "max_iter": scale.eig_max_iter, "tol": CURVATURE["tol"]},
                   "tolerance_method": TOL_METHOD.format(factor=bl.SAFETY_FACTOR)},
        )
        bl.write_baseline(path, doc)
        say(f"wrote {path}")
        written.append(path)
    return written
