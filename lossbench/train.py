"""The training recipe as a function of :class:`RunConfig`, with a disk cache keyed by the config hash.

Cache layout (one folder per ``config_hash`` under the cache root)::

    <cache>/<config_hash>/config.json     the RunConfig, readable
                          epoch-0000.pt   initial weights (the start of the trajectory)
                          epoch-NNNN.pt   weights after epoch N: {"format", "config", "epoch", "model"}
                          resume.pt       latest optimiser, generator and history (for resuming)
                          final.json      final metrics; its presence marks the entry complete
                          .lock           held while a process trains this config

Every file is written atomically; checkpoints are plain data loaded with ``weights_only=True``.
Training is deterministic on the CPU for a fixed seed: init, shuffling and augmentation draw from one
private ``torch.Generator`` whose state is saved with each epoch, so a resumed run is bit-identical
to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import __version__, stop
from ._io import torch_save_atomic, write_text_atomic
from ._progress import progress_bar
from .config import AUTHORS_LINEAR_STD, INITS, NORMAL_INIT_STD, RunConfig
from .data import ImageData, load_dataset
from .errors import CheckpointError, NotACheckpointError, check_choice, first_line
from .evaluate import cross_entropy, evaluate, make_batches
from .models import build_model

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "lossbench-checkpoint/1"
EVAL_BATCH = 500  # images per forward pass when evaluating; does not change the result (eval mode)
# Intra-op threads while training. Reductions in the convolution kernels are split by thread, so the
# trained weights depend on this number; fixing it makes them a function of the config alone (on one
# platform and torch). Parallelism comes from one process per core, each training its own configs.
TRAIN_THREADS = 1


def checkpoint_path(folder: Path, epoch: int) -> Path:
    """The weight file of `epoch` (0 = the initialisation) in a training cache entry `folder`."""
    return folder / f"epoch-{epoch:04d}.pt"


@dataclass(frozen=True)
class TrainResult:
    """A trained network and how it got there.

    Attributes:
        config: what was trained.
        model: the network after the last epoch, in eval mode, on the training device.
        history: one dict per epoch: epoch, lr (at its last step), train_loss and train_acc (running
            means over the epoch's training batches, train mode), test_loss, test_acc (eval mode), seconds;
            with ``config.clip_grad_norm`` also ``clipped`` (share of the epoch's steps whose gradient
            norm exceeded it) and ``grad_norm_max`` (the largest, before clipping).
        final: eval-mode train_loss, train_acc, test_loss, test_acc after training (nats, fraction).
        path: the cache folder holding the checkpoints.
        from_cache: True when nothing was trained in this call.
    """

    config: RunConfig
    model: nn.Module
    history: tuple[dict[str, float], ...]
    final: dict[str, float]
    path: Path
    from_cache: bool

    def checkpoint(self, epoch: int) -> Path:
        return checkpoint_path(self.path, epoch)

    @property
    def checkpoints(self) -> list[Path]:
        """Per-epoch weight files, epoch 0 (init) first."""
        return [self.checkpoint(e) for e in range(self.config.epochs + 1)]


def platform_id() -> dict[str, str]:
    """What identifies the numerics of a training run beyond its config: machine, CPU features, torch.

    Two runs of one config agree bit for bit only when these agree (and the thread count is fixed).
    """
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    isa = "avx512" if " avx512f" in flags else "avx2" if " avx2" in flags else platform.machine()
    return {"machine": platform.machine(), "system": platform.system(), "cpu_isa": isa,
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


#: A fall (:func:`falls`): an epoch's running train accuracy at most this share of the best of the
#: :data:`FALL_WINDOW` epochs before it, that best being at least :data:`FALL_FROM`.
FALL_RATIO = 0.55
FALL_FROM = 0.4
FALL_WINDOW = 8


def falls(history: Sequence[Mapping[str, float]], *, ratio: float = FALL_RATIO, from_acc: float = FALL_FROM,
          window: int = FALL_WINDOW) -> list[tuple[int, int]]:
    """The stretches of a training history where the net fell back towards chance, as (first, last) epoch.

    ``history``: one mapping per epoch with ``epoch`` and ``train_acc`` (the running accuracy of the
    epoch's batches, train mode; :attr:`TrainResult.history`). An epoch is in a fall when its accuracy is
    at most ``ratio`` times the best of the ``window`` epochs before it and that best is at least
    ``from_acc``: a net that had learnt something and lost most of it within a few epochs (the plain
    ResNet-56 under the authors' recipe: 0.70 to 0.10 in one epoch, benchmarks/RESULTS.md). The usual
    wobble of a learning net (0.9 to 0.65 and back) is not one; nor is a slow slide over more than
    ``window`` epochs. Consecutive epochs in a fall are one stretch.
    """
    if not 0 < ratio < 1 or window < 1:
        raise ValueError(f"falls: ratio={ratio} must be in (0, 1) and window={window} at least 1")
    acc = {int(e["epoch"]): float(e["train_acc"]) for e in history}
    out: list[tuple[int, int]] = []
    for epoch in sorted(acc):
        before = [acc[p] for p in range(epoch - window, epoch) if p in acc]
        if before and max(before) >= from_acc and acc[epoch] <= ratio * max(before):
            if out and out[-1][1] == epoch - 1:
                out[-1] = (out[-1][0], epoch)
            else:
                out.append((epoch, epoch))
    return out


def default_cache_dir() -> Path:
    """``$LOSSBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/lossbench``, else ``~/.cache/lossbench``."""
    if os.environ.get("LOSSBENCH_CACHE_DIR"):
        return Path(os.environ["LOSSBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lossbench"


def lr_at(step: int, total_steps: int, config: RunConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based) out of ``total_steps``.

    Linear warm-up over the first ``config.warmup`` fraction of steps (none by default), then ``lr``
    times ``lr_decay`` per milestone passed; milestone k falls at step round(milestones[k] * total).
    """
    warmup_steps = round(config.warmup * total_steps)
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    passed = sum(step >= round(m * total_steps) for m in config.milestones)
    return config.lr * config.lr_decay**passed


def init_weights_(model: nn.Module, init: str, *, generator: torch.Generator) -> None:
    """Re-initialise conv and linear weights in place from ``generator``; biases 0, BN weight 1, bias 0.

    ``he_normal``: N(0, 2/fan_in) (Kaiming) for convolutions and linear layers. ``normal``: N(0, 0.05^2)
    (Keras 1's ``normal``). ``authors``: the authors' ``init_params`` (``cifar10/main.py`` of Li et al.'s
    code): Kaiming-normal fan-in for every convolution, N(0, 1e-3^2) for linear layers.
    ``default``: PyTorch's own scheme (Kaiming-uniform, a=sqrt(5)), drawn from the generator.
    """
    check_choice("init", init, INITS)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if init == "he_normal" or (init == "authors" and isinstance(module, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
            elif init == "authors":  # a linear layer: the authors' small readout, logits near 0 at the start
                nn.init.normal_(module.weight, 0.0, AUTHORS_LINEAR_STD, generator=generator)
            elif init == "normal":
                nn.init.normal_(module.weight, 0.0, NORMAL_INIT_STD, generator=generator)
            elif init == "default":
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            else:
                raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def make_model(config: RunConfig) -> nn.Module:
    """The (untrained, PyTorch-initialised) network a config describes."""
    return build_model(config.arch, config.depth, width=config.width, shortcut=config.shortcut,
                       image_size=config.image_size)


def make_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas, eps=config.eps,
                                weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; expected adam or sgd")


def augment(x: Tensor, pad_value: Tensor, generator: torch.Generator) -> Tensor:
    """Random crop after zero-padding by 4 (black pixels, i.e. ``pad_value`` after normalisation) and a
    random horizontal flip; x is (B, C, H, W)."""
    b, c, h, w = x.shape
    padded = pad_value.view(1, c, 1, 1).expand(b, c, h + 8, w + 8).clone()
    padded[:, :, 4 : 4 + h, 4 : 4 + w] = x
    offsets = torch.randint(0, 9, (b, 2), generator=generator).tolist()
    flips = (torch.rand(b, generator=generator) < 0.5).tolist()
    out = torch.empty_like(x)
    for i, ((dy, dx), flip) in enumerate(zip(offsets, flips)):
        crop = padded[i, :, dy : dy + h, dx : dx + w]
        out[i] = crop.flip(-1) if flip else crop
    return out


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder/.lock``: a second process training the same config waits here."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; name the file and the fix
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {first_line(exc)}; "
                              f"{_fix_for(path)}") from None


def _fix_for(path: Path) -> str:
    """The advice that works for a damaged checkpoint: a cache entry is retrained from scratch once its
    whole folder is gone (deleting one epoch leaves final.json pointing at it); a user's file is theirs."""
    if (path.parent / "config.json").exists():
        return f"delete the cache folder {path.parent} (rm -r) and the net is retrained on next use"
    return "the file is damaged: save it again, or pass another checkpoint"


def load_checkpoint(path: str | Path) -> tuple[RunConfig, dict[str, Tensor], int]:
    """(config, model state dict, epoch) from an ``epoch-NNNN.pt`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = _load(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise NotACheckpointError(f"{path} is not a lossbench checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return RunConfig.from_dict(data["config"]), data["model"], int(data["epoch"])


def model_from_checkpoint(path: str | Path, *, device: torch.device | str = "cpu") -> tuple[RunConfig, nn.Module]:
    """Build the network of a checkpoint and load its weights; eval mode, on ``device``."""
    config, state, _ = load_checkpoint(path)
    model = make_model(config)
    _load_state(model, state, Path(path), config)
    return config, model.to(device).eval()


def state_mismatch(model: nn.Module, state: Mapping[str, Tensor]) -> str:
    """Why ``state`` does not fit ``model`` strictly, in one phrase (counts and the first names of the
    missing, unexpected and wrong-shape tensors), or "" when it fits: torch's own error lists every key."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = [f"{len(missing)} missing ({', '.join(missing[:3])})" if missing else "",
             f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})" if unexpected else "",
             f"{len(wrong)} of another shape ({'; '.join(wrong[:3])})" if wrong else ""]
    return ", ".join(x for x in parts if x)


def _load_state(model: nn.Module, state: dict[str, Tensor], path: Path, config: RunConfig) -> None:
    """``load_state_dict``, with a mismatch named in one line."""
    why = state_mismatch(model, state)
    if why:
        raise CheckpointError(f"{path} says it holds {config.config_id} but its weights do not fit that net: "
                              f"{why}; {_fix_for(path)}")
    model.load_state_dict(state)


def _check_entry(folder: Path, config: RunConfig) -> None:
    """Refuse a cache folder that holds another config (a hash collision or a hand-copied folder)."""
    stored = folder / "config.json"
    if stored.exists():
        other = RunConfig.from_dict(json.loads(stored.read_text()))
        if other != config:
            raise CheckpointError(
                f"cache entry {folder} holds {other.config_id} ({other.config_hash[:12]}), not "
                f"{config.config_id} ({config.config_hash[:12]}); delete the folder"
            )


def train(
    config: RunConfig,
    *,
    data: ImageData | None = None,
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    test_every: int = 1,
) -> TrainResult:
    """Train ``config`` (or load it from the cache), saving a checkpoint per epoch.

    Args:
        config: the run.
        data: the data set; loaded from the config when None.
        device: where to train; the data are moved there once.
        cache_dir: cache root (default :func:`default_cache_dir`).
        data_dir: CIFAR-10 location when ``config.dataset == "cifar10"``.
        progress: show a progress bar (None: only on a terminal).
        on_epoch_end: called as ``f(epoch, history_row)`` after each epoch's checkpoint is saved.
        test_every: evaluate the test set after every this many epochs and after the last (the rows in
            between have ``test_loss`` and ``test_acc`` None). Not part of the config: the weights are the
            same whatever it is; on a CPU at the small scale, a test evaluation is 27-36 % of an epoch's time.

    Returns:
        :class:`TrainResult`; an interrupted run resumes from its last finished epoch next time.
    """
    if test_every < 1:
        raise ValueError(f"test_every={test_every} must be a number of epochs >= 1")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / config.config_hash
    with _locked(folder):
        # whoever holds the lock is the folder's only writer: a temporary here is what a run killed
        # mid-write (SIGKILL, power loss) left behind, never a file in progress
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        _check_entry(folder, config)
        write_text_atomic(folder / "config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
        if (folder / "final.json").exists():
            return _load_finished(config, folder, device)
        if data is None:
            data = load_dataset(config, data_dir=data_dir)
        with _intra_op_threads(TRAIN_THREADS):
            return _train_locked(config, data, torch.device(device), folder, progress, on_epoch_end, test_every)


@contextlib.contextmanager
def _intra_op_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_in_worker(args: tuple[dict[str, Any], str, str, str | None, int]) -> str:
    config, cache_dir, device, data_dir, test_every = args
    torch.set_num_threads(TRAIN_THREADS)
    result = train(RunConfig.from_dict(config), device=device, cache_dir=cache_dir, data_dir=data_dir, progress=False,
                   test_every=test_every)
    return result.config.config_id


def is_trained(config: RunConfig, cache_dir: str | Path) -> bool:
    """Whether ``config`` has finished training in the cache ``cache_dir`` (its ``final.json`` is written
    last, after every checkpoint)."""
    return (Path(cache_dir) / config.config_hash / "final.json").exists()


def train_many(configs: list[RunConfig], *, cache_dir: str | Path | None = None, device: str = "cpu",
               data_dir: str | Path | None = None, workers: int | None = None, test_every: int = 1) -> list[str]:
    """Train every config that is not cached yet, ``workers`` processes at a time (default: one per
    core), each single-threaded: the same weights as one after the other, in less time. ``test_every``:
    as for :func:`train`.

    Returns the config ids that were trained here (the others were cached already).
    """
    import concurrent.futures
    import multiprocessing

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    todo = [c for c in configs if not is_trained(c, root)]
    todo.sort(key=lambda c: -c.depth * c.epochs)  # the longest first, so the workers finish together
    workers = min(workers or os.cpu_count() or 1, len(todo))
    if workers <= 1 or torch.device(device).type != "cpu":
        for c in todo:
            train(c, device=device, cache_dir=root, data_dir=data_dir, test_every=test_every)
        return [c.config_id for c in todo]
    jobs = [(c.to_dict(), str(root), str(device), None if data_dir is None else str(data_dir), test_every)
            for c in todo]
    # spawn, not fork: the parent has torch's thread pools running
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_train_in_worker, jobs))


def load_trained(config: RunConfig, *, cache_dir: str | Path | None = None,
                 device: torch.device | str = "cpu") -> TrainResult:
    """The cached result of ``config``; a clear error when it has not been trained."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / config.config_hash
    if not (folder / "final.json").exists():
        raise CheckpointError(
            f"{config.config_id} is not trained in {root} (no {folder.name}/final.json); "
            f"run `python -m lossbench train` for it first"
        )
    _check_entry(folder, config)
    return _load_finished(config, folder, device)


def _load_finished(config: RunConfig, folder: Path, device: torch.device | str) -> TrainResult:
    final = json.loads((folder / "final.json").read_text())
    last = checkpoint_path(folder, config.epochs)
    if not last.is_file():
        raise CheckpointError(f"the cache entry {folder} of {config.config_id} is marked finished but lacks {last.name}: "
                              f"{_fix_for(last)}")
    ckpt_config, state, epoch = load_checkpoint(last)
    if ckpt_config != config or epoch != config.epochs:
        raise CheckpointError(f"{folder} holds epoch {epoch} of {ckpt_config.config_id}, not the end of {config.config_id}")
    model = make_model(config)
    _load_state(model, state, last, config)
    return TrainResult(config=config, model=model.to(device).eval(), history=tuple(final["history"]),
                       final=final["final"], path=folder, from_cache=True)


def _train_locked(
    config: RunConfig, data: ImageData, device: torch.device, folder: Path, progress: bool | None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None, test_every: int = 1,
) -> TrainResult:
    generator = torch.Generator().manual_seed(config.seed)
    model = make_model(config)
    init_weights_(model, config.init, generator=generator)
    model.to(device)
    if config.channels_last:  # before the optimiser: its state follows the parameters' layout
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    history: list[dict[str, float]] = []
    start_epoch = 0

    resume = folder / "resume.pt"
    if resume.exists():
        state = _load(resume)
        if state.get("config") != config.to_dict():
            raise CheckpointError(f"{resume} belongs to another config; delete it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        log.info("resuming %s from epoch %d", config.config_id, start_epoch)
    else:
        _save_epoch(config, model, folder, 0)

    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    test_batches = make_batches(data.x_test, data.y_test, EVAL_BATCH, device=device)
    loss_fn = cross_entropy()
    n = len(x_train)
    batch_size = min(config.batch_size, n)
    steps_per_epoch = n // batch_size  # drop the last partial batch: a tiny batch skews BN statistics
    total_steps = steps_per_epoch * config.epochs
    pad_value = (-torch.tensor(data.mean) / torch.tensor(data.std)).to(device=device, dtype=x_train.dtype)

    bar = progress_bar(total=total_steps, initial=start_epoch * steps_per_epoch, progress=progress,
                       desc=f"train {config.config_id}", unit="step")
    t_start = time.perf_counter()
    try:
        for epoch in range(start_epoch, config.epochs):
            t_epoch = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=generator)
            # running sums stay on the device: reading them each step would wait for the GPU every step
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            clipped = torch.zeros((), dtype=torch.int64, device=device)
            norm_max = torch.zeros((), dtype=torch.float32, device=device)
            seen = 0
            lr = config.lr
            for k in range(steps_per_epoch):
                step = epoch * steps_per_epoch + k
                lr = lr_at(step, total_steps, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                idx = order[k * batch_size : (k + 1) * batch_size].to(device)
                xb, yb = x_train[idx], y_train[idx]
                if config.augment:
                    xb = augment(xb, pad_value, generator)
                if config.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.clip_grad_norm:
                    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
                    clipped += norm > config.clip_grad_norm
                    norm_max = torch.maximum(norm_max, norm.detach().float())
                optimizer.step()
                loss_sum += loss.detach().double() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
                seen += len(yb)
                bar.update(1)
                stop.check()  # a SIGTERM whose KeyboardInterrupt was swallowed (see lossbench.stop)
            train_loss, train_acc = float(loss_sum) / seen, int(correct) / seen
            bar.set_postfix(epoch=epoch + 1, loss=f"{train_loss:.3f}")
            tested = (epoch + 1) % test_every == 0 or epoch + 1 == config.epochs
            test = evaluate(model, loss_fn, test_batches) if tested else None
            row = dict(epoch=epoch + 1, lr=lr, train_loss=train_loss, train_acc=train_acc,
                       test_loss=test.loss if test else None, test_acc=test.acc if test else None,
                       seconds=time.perf_counter() - t_epoch)
            if config.clip_grad_norm:
                # how often the clip bound (a rare cap on a fall's steps, or a lower lr in disguise) and
                # the largest gradient norm it saw
                row.update(clipped=int(clipped) / steps_per_epoch, grad_norm_max=float(norm_max))
            history.append(row)
            _save_epoch(config, model, folder, epoch + 1)
            torch_save_atomic(
                {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "epoch": epoch + 1,
                 "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "generator": generator.get_state(), "history": history},
                resume,
            )
            log.info("%s epoch %d: %s", config.config_id, epoch + 1, row)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
    finally:
        bar.close()

    train_eval = evaluate(model, loss_fn, make_batches(x_train, y_train, EVAL_BATCH))
    test_eval = evaluate(model, loss_fn, test_batches)
    final = dict(train_loss=train_eval.loss, train_acc=train_eval.acc, test_loss=test_eval.loss,
                 test_acc=test_eval.acc)
    meta = dict(final=final, history=history, seconds=time.perf_counter() - t_start, device=str(device),
                device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                torch=torch.__version__, lossbench=__version__, config_id=config.config_id,
                threads=torch.get_num_threads(), platform=platform_id())
    write_text_atomic(folder / "final.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    resume.unlink(missing_ok=True)
    if config.channels_last:  # callers get the usual layout whatever trained it
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return TrainResult(config=config, model=model, history=tuple(history), final=final, path=folder,
                       from_cache=False)


def _save_epoch(config: RunConfig, model: nn.Module, folder: Path, epoch: int) -> None:
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    torch_save_atomic({"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "epoch": epoch, "model": state},
                      checkpoint_path(folder, epoch))
