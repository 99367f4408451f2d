"""Reference nets: trained once, shipped in the repository, loaded and verified by hash.

The ``small`` scale's nets take hours to train on a CPU, so they are trained once and shipped under
``baselines/<scale>/nets/``::

    <config_id>.pt        float32 state dict of the final weights (loaded with ``weights_only=True``)
    <config_id>.json      provenance: config and its hash, recipe, commit, torch, platform, threads,
                          wall time, final train/test loss and accuracy, converged, sha256 of the files
    <config_id>.pca.pt    the PCA of the training path (paper section 7), computed once from evenly
                          spaced checkpoints: the projected path, the explained variance, the share
                          that two random filter-normalised directions capture, the sha256 of every
                          checkpoint used, and for the batch-128 nets of the seed recipe the two
                          directions themselves (float16, scaled per tensor)

Checkpoints themselves are not shipped (61 per net would not fit the size budget). The PCA directions
are as large as the weights, so only the nets whose PCA plane the suite draws (batch 128, seed
recipe: the paper's Figure 9 kind) carry them; every net carries what the PCA claim needs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._io import state_sha256, torch_save_atomic, write_text_atomic
from .config import RunConfig
from .directions import Direction
from .errors import CheckpointError

PROVENANCE_FORMAT = "lossbench-reference-net/1"
PCA_FORMAT = "lossbench-reference-pca/1"
#: At least this many evenly spaced checkpoints (epoch 0 and the last included) go into the PCA.
PCA_CHECKPOINTS = 20


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evenly_spaced_epochs(epochs: int, count: int = PCA_CHECKPOINTS) -> list[int]:
    """``count`` or more epochs from 0 to ``epochs`` inclusive, evenly spaced (a step that divides
    evenly when one exists), always ending at ``epochs``."""
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be at least 1")
    step = max(1, epochs // count)
    out = list(range(0, epochs + 1, step))
    if out[-1] != epochs:
        out.append(epochs)
    return out


@dataclass(frozen=True)
class ShippedPCA:
    """The stored PCA of a training path.

    Attributes:
        delta, eta: unit-norm principal directions (float32, restored from float16 storage); 1-D
            tensors (biases, BN) zero, as in the authors' code. None where they were not shipped.
        explained_variance_ratio: (k,) share of the path's variance along each principal component.
        coords: (E, 2) the path projected on (delta, eta), in units of the unit directions.
        epochs: (E,) the epochs of the checkpoints used.
        random_share: share of the path's variance that two random filter-normalised directions
            (orthonormalised) capture: close to 0, the paper's Figure 8.
        random_coords: (E, 2) the path projected on those random unit directions.
    """

    delta: Direction | None
    eta: Direction | None
    explained_variance_ratio: np.ndarray
    coords: np.ndarray
    epochs: tuple[int, ...]
    random_share: float
    random_coords: np.ndarray


def _to_f16(direction: Direction) -> dict[str, Any]:
    """Per-tensor scaled float16: ``scale * half`` restores the tensor to ~1e-3 relative accuracy."""
    out = {}
    for name, t in direction.items():
        scale = float(t.abs().max()) or 1.0
        out[name] = {"scale": scale, "half": (t / scale).to(torch.float16)}
    return out


def _from_f16(stored: dict[str, Any]) -> Direction:
    return {name: v["half"].float() * float(v["scale"]) for name, v in stored.items()}


def compute_path_pca(checkpoints: Sequence[Path], final: dict[str, Tensor], *, seed: int = 0) -> ShippedPCA:
    """PCA of the path through ``checkpoints`` (weights only, biasbn ignored) and its random contrast.

    Args:
        checkpoints: per-epoch checkpoint files in epoch order, the last one being ``final``'s epoch.
        final: the end point's weights (parameters only, float32).
        seed: seed of the two random directions of the contrast.
    """
    from .directions import norm_of, normalize_direction, orthogonalize, random_direction
    from .trajectory import load_path, pca_directions, project

    thetas, epochs = load_path(checkpoints, list(final))
    pca = pca_directions(thetas, final, epochs=epochs)
    rand = [normalize_direction(random_direction(final, seed=seed + i), final) for i in (0, 1)]
    rand[1] = orthogonalize(rand[1], rand[0])
    rand = [{k: v / norm_of(d) for k, v in d.items()} for d in rand]
    random_coords = project(thetas, final, rand[0], rand[1])
    # share of the centred path's squared length along the two random unit directions, the same
    # quantity the PCA's explained-variance ratio measures along its own two directions
    centred = random_coords - random_coords.mean(0, keepdims=True)
    names = [n for n in final if final[n].dim() > 1]
    total = 0.0
    mean = {n: sum(t[n].double() for t in thetas) / len(thetas) for n in names}
    for t in thetas:
        total += sum(float(((t[n].double() - mean[n]) ** 2).sum()) for n in names)
    random_share = float((centred**2).sum() / total) if total > 0 else math.nan
    return ShippedPCA(delta=pca.delta, eta=pca.eta, explained_variance_ratio=pca.explained_variance_ratio,
                      coords=pca.coords, epochs=tuple(pca.epochs), random_share=random_share,
                      random_coords=random_coords)


#: Where ``ship`` puts a net, by kind: the scale's matrix at training seed 0 and its other training
#: seeds (the seed spread; weights in git for both) and its GPU-only nets (provenance in git, weights not:
#: they would break the repository's size budget).
NET_FOLDERS = ("nets", "seed-nets", "gpu-nets")


def nets_dir(baselines_dir: str | Path, scale: str, kind: str = "nets") -> Path:
    if kind not in NET_FOLDERS:
        raise ValueError(f"unknown kind of net folder {kind!r}; expected one of {', '.join(NET_FOLDERS)}")
    return Path(baselines_dir) / scale / kind


def ships_pca_directions(config: RunConfig) -> bool:
    """Whether a net's PCA directions are shipped: only for the net whose PCA plane the suite draws
    (ResNet-20 with shortcuts, batch 128, seed recipe, training seed 0); they are as large as the
    weights, and every net carries what the PCA claim needs without them."""
    return (config.depth == 20 and config.shortcut and config.batch_size == 128 and config.optimizer == "adam"
            and config.width == 1 and config.seed == 0)


def final_on_cpu(config: RunConfig, model: nn.Module) -> dict[str, float]:
    """Train and test loss and accuracy of ``model`` on the CPU, one intra-op thread, batches of 500.

    What a shipped net's provenance records as ``final``, so that any machine can recompute it
    exactly (accuracy) or to float tolerance (loss), whatever device trained the net.
    """
    import copy

    from .data import load_dataset
    from .evaluate import cross_entropy, evaluate, make_batches
    from .train import EVAL_BATCH, TRAIN_THREADS, _intra_op_threads

    cpu_model = copy.deepcopy(model).to("cpu", torch.float32).eval()
    data = load_dataset(config)
    final: dict[str, float] = {}
    with _intra_op_threads(TRAIN_THREADS):
        for split in ("train", "test"):
            x, y = data.split(split)
            got = evaluate(cpu_model, cross_entropy(), make_batches(x, y, EVAL_BATCH))
            final[f"{split}_loss"], final[f"{split}_acc"] = got.loss, got.acc
    return final


#: What a shipped net's provenance keeps of each epoch of its training history.
HISTORY_KEYS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
#: Kept too where the run recorded them (a config with ``clip_grad_norm``): the share of the epoch's steps
#: clipped and the largest gradient norm, the evidence of how much the clip acted.
CLIP_HISTORY_KEYS = ("clipped", "grad_norm_max")


def ship(result, baselines_dir: str | Path, scale: str, *, recipe: str, commit: str,
         converged: Callable[[dict[str, float]], bool], kind: str = "nets") -> Path:
    """Write a finished :class:`~lossbench.train.TrainResult` to ``baselines/<scale>/<kind>/``.

    Args:
        result: the cached training result (its folder must still hold the per-epoch checkpoints).
        recipe: the recipe's name (``seed`` or ``paper-sgd``) for the provenance.
        commit: the commit of the code that trained it.
        converged: the caller's criterion of a minimum, applied to the recorded ``final``.
        kind: one of :data:`NET_FOLDERS`.

    Returns:
        The provenance file's path.
    """
    config: RunConfig = result.config
    folder = nets_dir(baselines_dir, scale, kind)
    folder.mkdir(parents=True, exist_ok=True)
    meta = json.loads((Path(result.path) / "final.json").read_text())
    state = {k: v.detach().to("cpu", torch.float32, copy=True) if v.is_floating_point() else v.detach().cpu().clone()
             for k, v in result.model.state_dict().items()}
    weights_path = folder / f"{config.config_id}.pt"
    torch_save_atomic(state, weights_path)

    epochs = evenly_spaced_epochs(config.epochs)
    ckpts = [result.checkpoint(e) for e in epochs]
    missing = [str(p) for p in ckpts if not p.is_file()]
    if missing:
        raise CheckpointError(f"cannot ship {config.config_id}: checkpoints missing for its PCA: {missing[:3]}")
    final_params = {n: p.detach().cpu().float() for n, p in result.model.named_parameters()}
    pca = compute_path_pca(ckpts, final_params)
    pca_path = folder / f"{config.config_id}.pca.pt"
    torch_save_atomic({
        "format": PCA_FORMAT, "config_id": config.config_id, "config_hash": config.config_hash,
        **({"delta": _to_f16(pca.delta), "eta": _to_f16(pca.eta)} if ships_pca_directions(config) else {}),
        "explained_variance_ratio": torch.from_numpy(np.asarray(pca.explained_variance_ratio, dtype=np.float64)),
        "coords": torch.from_numpy(np.asarray(pca.coords, dtype=np.float64)),
        "epochs": list(pca.epochs), "random_share": pca.random_share,
        "random_coords": torch.from_numpy(np.asarray(pca.random_coords, dtype=np.float64)),
        "checkpoint_sha256": {str(e): sha256_of(p) for e, p in zip(epochs, ckpts)},
    }, pca_path)

    history = [{k: row[k] for k in (*HISTORY_KEYS, *CLIP_HISTORY_KEYS) if k in HISTORY_KEYS or k in row}
               for row in meta["history"]]
    # A net trained on a GPU is scored again on the CPU: that is where the suite checks it.
    trained_on_cpu = str(meta.get("device", "cpu")).startswith("cpu")
    final = meta["final"] if trained_on_cpu else final_on_cpu(config, result.model)
    provenance = {
        "format": PROVENANCE_FORMAT, "config_id": config.config_id, "config": config.to_dict(),
        "config_hash": config.config_hash, "recipe": recipe, "commit": commit,
        "torch": meta.get("torch"), "platform": meta.get("platform"), "threads": meta.get("threads"),
        "device": meta.get("device"), "device_name": meta.get("device_name", "cpu"), "wall_seconds": meta.get("seconds"),
        "final": final, "converged": bool(converged(final)),
        **({} if trained_on_cpu else {"final_on_training_device": meta["final"]}),
        "weights_file": weights_path.name, "weights_sha256": sha256_of(weights_path),
        "state_sha256": state_sha256(state),
        "pca_file": pca_path.name, "pca_sha256": sha256_of(pca_path),
        "pca_explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio],
        "pca_random_share": pca.random_share, "pca_epochs": list(pca.epochs),
        "history": history,
    }
    path = folder / f"{config.config_id}.json"
    write_text_atomic(path, json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return path


@dataclass(frozen=True)
class ReferenceNet:
    """A shipped net, verified against its provenance.

    Attributes:
        config: the config it was trained with.
        model: the network with the shipped weights, eval mode, on the requested device.
        provenance: the provenance JSON as a dict.
        path: the provenance file.
    """

    config: RunConfig
    model: nn.Module
    provenance: dict[str, Any]
    path: Path

    @property
    def final(self) -> dict[str, float]:
        return dict(self.provenance["final"])

    @property
    def converged(self) -> bool:
        return bool(self.provenance["converged"])

    @property
    def history(self) -> tuple[dict[str, float], ...]:
        return tuple(self.provenance.get("history", ()))

    @property
    def state_sha256(self) -> str:
        return str(self.provenance["state_sha256"])

    def pca(self) -> ShippedPCA:
        """The stored PCA of the training path (sha256-verified)."""
        file = self.path.with_name(self.provenance["pca_file"])
        _verify(file, self.provenance["pca_sha256"], self.config.config_id)
        data = torch.load(file, map_location="cpu", weights_only=True)
        if data.get("format") != PCA_FORMAT:
            raise CheckpointError(f"{file} is not a lossbench PCA file (format {PCA_FORMAT!r} expected)")
        return ShippedPCA(delta=_from_f16(data["delta"]) if "delta" in data else None,
                          eta=_from_f16(data["eta"]) if "eta" in data else None,
                          explained_variance_ratio=data["explained_variance_ratio"].numpy(),
                          coords=data["coords"].numpy(), epochs=tuple(data["epochs"]),
                          random_share=float(data["random_share"]), random_coords=data["random_coords"].numpy())


def _verify(file: Path, expected: str, config_id: str) -> None:
    if not file.is_file():
        raise CheckpointError(f"shipped file {file} of {config_id} is missing; restore it with `git checkout -- {file}`")
    got = sha256_of(file)
    if got != expected:
        raise CheckpointError(
            f"{file} has sha256 {got[:16]}…, its provenance says {expected[:16]}…: the shipped file was changed; "
            f"restore it with `git checkout -- {file}` or re-ship the net (`python -m lossbench ship`)"
        )


def ship_control_point(theta_c: dict[str, torch.Tensor], path: str | Path) -> str:
    """Write a mode-connecting curve's control point (parameter name -> tensor, float32 on the CPU) to
    ``path`` atomically; returns the file's sha256 (what :func:`load_control_point` checks)."""
    from ._io import torch_save_atomic

    torch_save_atomic({n: t.detach().to("cpu", torch.float32).contiguous() for n, t in theta_c.items()}, path)
    return sha256_of(Path(path))


def load_control_point(path: str | Path, sha256: str, name: str) -> dict[str, torch.Tensor]:
    """A shipped control point, its sha256 verified (``name``: what it belongs to, for the errors)."""
    path = Path(path)
    _verify(path, sha256, name)
    return torch.load(path, map_location="cpu", weights_only=True)


def shipped_ids(baselines_dir: str | Path, scale: str, kind: str = "nets") -> list[str]:
    """Config ids of the nets shipped for ``scale`` (sorted)."""
    folder = nets_dir(baselines_dir, scale, kind)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def training_runs(config_id: str, baselines_dir: str | Path, scale: str) -> list[dict[str, Any]]:
    """The provenance of every shipped training seed of seed-0 net ``config_id``, in seed order: seed 0
    from ``nets/``, the others from ``seed-nets/`` (ids ``<stem>-s<seed>``, where ``config_id`` is
    ``<stem>-s0``); [] when none is shipped. Reads the JSON only: what a report of the training runs
    needs (``final``, ``converged``, ``history``, ``platform``, ``wall_seconds``), without the weights."""
    if not config_id.endswith("-s0"):
        raise ValueError(f"{config_id!r} is not a seed-0 id (<stem>-s0): its other seeds cannot be named")
    stem = config_id[:-3]
    runs = []
    first = nets_dir(baselines_dir, scale) / f"{config_id}.json"
    if first.is_file():
        runs.append((0, json.loads(first.read_text())))
    folder = nets_dir(baselines_dir, scale, "seed-nets")
    for path in folder.glob(f"{stem}-s*.json") if folder.is_dir() else ():
        seed = re.fullmatch(rf"{re.escape(stem)}-s(\d+)", path.stem)
        if seed and int(seed.group(1)) > 0:
            runs.append((int(seed.group(1)), json.loads(path.read_text())))
    return [{**prov, "seed": seed} for seed, prov in sorted(runs, key=lambda r: r[0])]


def load_reference(config_id: str, baselines_dir: str | Path, scale: str, *,
                   device: torch.device | str = "cpu", kind: str = "nets") -> ReferenceNet:
    """Load and verify a shipped net: provenance format, config hash, weights sha256."""
    from .models import build_model

    path = nets_dir(baselines_dir, scale, kind) / f"{config_id}.json"
    if not path.is_file():
        have = ", ".join(shipped_ids(baselines_dir, scale, kind)) or "none"
        raise CheckpointError(f"no shipped net {config_id!r} for scale {scale!r} in {path.parent}; shipped: {have}")
    prov = json.loads(path.read_text())
    if not isinstance(prov, dict) or prov.get("format") != PROVENANCE_FORMAT:
        raise CheckpointError(f"{path} is not a reference-net provenance (format {PROVENANCE_FORMAT!r} expected)")
    config = RunConfig.from_dict(prov["config"])
    if config.config_hash != prov["config_hash"]:
        raise CheckpointError(f"{path}: its config does not hash to its config_hash; the file was edited by hand")
    weights = path.with_name(prov["weights_file"])
    if kind != "nets" and not weights.is_file():
        base = config.replace(seed=0).config_id
        raise CheckpointError(
            f"{weights} is not in this checkout: {kind}/ keeps the provenance of every net it lists, but not every "
            f"net's weights. Retrain it (the provenance's sha256 says whether you got the same weights): python -m "
            f"lossbench train --scale {scale} --all --only {base} --seed {config.seed}, then python -m lossbench "
            f"ship --scale {scale} --only {base} --seeds {config.seed}")
    _verify(weights, prov["weights_sha256"], config_id)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = build_model(config.arch, config.depth, width=config.width, shortcut=config.shortcut,
                        image_size=config.image_size)
    model.load_state_dict(state)
    return ReferenceNet(config=config, model=model.to(device).eval(), provenance=prov, path=path)
