"""Run configurations: what to train, with which recipe, on which data; and the scales.

A :class:`RunConfig` fully determines a training run (and so a cache entry). Two recipes build one:

* :func:`seed_recipe`, the one this project was asked for: Adam (beta1 0.9, beta2 0.999, eps 1e-7),
  lr 0.01 divided by 10 at 50 %, 75 % and 91.7 % of training (epochs 150, 225, 275 of 300), batch
  size 128 or 2000, He-normal init with shortcuts and normal init without.
* :func:`paper_recipe`, the authors' CIFAR-10 recipe (Li et al. 2018, section 5): SGD with Nesterov
  momentum 0.9, lr 0.1 with the same milestones, weight decay 5e-4, batch 128, 300 epochs, crop and flip.

:data:`SCALES` maps ``ci | small | paper`` to a :class:`Scale`: the matrix of configs
(architecture x shortcut x batch size) plus the grid and evaluation sizes used for surfaces.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import check_choice

Arch = Literal["resnet", "vgg"]
Optimizer = Literal["adam", "sgd"]
Init = Literal["he_normal", "normal", "authors", "default"]
Dataset = Literal["synthetic", "synthetic-hard", "cifar10"]

ARCHS: tuple[str, ...] = ("resnet", "vgg")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
INITS: tuple[str, ...] = ("he_normal", "normal", "authors", "default")
#: The embedded synthetic data sets: name -> the parameters of :class:`lossbench.data.SyntheticSpec` that
#: differ from its defaults (``synthetic``, the ``ci`` scale's). A config of any other than ``synthetic``
#: carries these parameters in :meth:`RunConfig.to_dict`, so they are part of its hash and provenance.
SYNTHETIC_DATASETS: dict[str, dict[str, float]] = {
    "synthetic": {},
    # the small scale's since 2026-12-04: smaller, fainter, noisier and more rotated shapes, so that nets
    # generalise differently (test errors of several %; calibration in benchmarks/RESULTS.md)
    "synthetic-hard": {"size_min": 0.17, "size_range": 0.13, "max_angle": 20.0, "contrast_min": 0.20,
                       "contrast_range": 0.30, "pixel_noise": 0.10},
}
DATASETS: tuple[str, ...] = (*SYNTHETIC_DATASETS, "cifar10")

#: The choices of a direction (lossbench.directions): its normalisation, which tensors get a zero
#: direction, and whether it spans the parameters or the whole state dict. Here, torch-free, so that the
#: command line can offer them without importing torch.
NORMS: tuple[str, ...] = ("filter", "layer", "weight", "dfilter", "dlayer", "none")
IGNORES: tuple[str, ...] = ("biasbn", "none")
DIR_TYPES: tuple[str, ...] = ("weights", "states")

#: Milestones of the step decay as fractions of all optimiser steps: epochs 150, 225, 275 of 300.
PAPER_MILESTONES: tuple[float, ...] = (0.5, 0.75, 275 / 300)

#: Standard deviation of the "normal" init (Keras 1's ``normal`` initialiser, whose name and whose
#: Adam epsilon 1e-7 the seed recipe uses).
NORMAL_INIT_STD = 0.05
#: Standard deviation of the linear layer's weights in the authors' ``init_params`` (``init="authors"``).
AUTHORS_LINEAR_STD = 1e-3


#: Each optimizer's peak learning rate in its recipe: Adam's in the seed's (:func:`seed_recipe`), SGD's in the
#: authors' (:func:`paper_recipe`); a config at another shows it in its id.
RECIPE_LR: dict[str, float] = {"adam": 0.01, "sgd": 0.1}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run.

    Attributes:
        arch: ``resnet`` (CIFAR ResNet, depth 6n+2) or ``vgg`` (VGG-9; ``depth`` must be 9).
        depth: number of weighted layers (20, 56, 110 for the paper's ResNets).
        width: channel multiplier k (16k, 32k, 64k channels per stage).
        shortcut: keep the residual identity/projection path; False gives the paper's "noshort" nets.
        batch_size: images per optimiser step (capped at the training-set size).
        optimizer: ``adam`` or ``sgd``.
        lr: peak learning rate.
        betas, eps: Adam's moment decay rates and epsilon.
        momentum, nesterov: SGD momentum settings.
        weight_decay: L2 coefficient added to the gradient (coupled, as in torch.optim).
        epochs: passes over the training set.
        milestones: fractions of all optimiser steps at which lr is multiplied by ``lr_decay``.
        lr_decay: the multiplicative decay at each milestone.
        warmup: fraction of all steps with a linear lr warm-up from lr/warmup_steps. 0 = the recipe
            as asked; a CPU scale may opt in so that deep nets leave the initial plateau in budget.
        init: ``he_normal`` (Kaiming fan-in), ``normal`` (N(0, 0.05^2)), ``authors`` (Kaiming fan-in for
            convolutions, N(0, 1e-3^2) for the linear layer: the authors' ``init_params``) or ``default``
            (PyTorch's).
        augment: random crop (pad 4) and horizontal flip during training.
        seed: seeds init, shuffling and augmentation (via a private torch.Generator).
        dataset: ``synthetic`` or ``synthetic-hard`` (embedded, procedural; :data:`SYNTHETIC_DATASETS`)
            or ``cifar10``.
        image_size: side in pixels (32 for CIFAR-10; 16 allowed for synthetic at CPU scales).
        n_train, n_test: sizes of the train and test splits.
        data_seed: seed of the synthetic data set (independent of ``seed``).
        channels_last: train in the NHWC memory layout (opt-in, 1.1-1.7x faster on the CPU here,
            benchmarks/RESULTS.md): other convolution kernels, so other weights than the default
            layout's; a separate config (``-cl`` in its id, its own hash). Left out of
            :meth:`to_dict` when off, so the existing configs keep their hashes.
        clip_grad_norm: rescale each step's loss gradient (weight decay is added after, inside the
            optimiser) to at most this global L2 norm; 0 = none, as in both recipes. A calibration
            candidate against the falls back to chance of the plain ResNet-56 at the top lr
            (benchmarks/RESULTS.md); ``-clip<value>`` in the id, left out of :meth:`to_dict` when 0.
    """

    arch: str = "resnet"
    depth: int = 20
    width: int = 1
    shortcut: bool = True
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-7
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    epochs: int = 300
    milestones: tuple[float, ...] = PAPER_MILESTONES
    lr_decay: float = 0.1
    warmup: float = 0.0
    init: str = "he_normal"
    augment: bool = False
    seed: int = 0
    dataset: str = "synthetic"
    image_size: int = 32
    n_train: int = 50_000
    n_test: int = 10_000
    data_seed: int = 0
    channels_last: bool = False
    clip_grad_norm: float = 0.0

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCHS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("init", self.init, INITS)
        check_choice("dataset", self.dataset, DATASETS)
        if self.arch == "resnet" and (self.depth < 8 or (self.depth - 2) % 6 != 0):
            raise ValueError(f"resnet depth {self.depth} is not of the form 6n+2 with n >= 1 (e.g. 20, 56, 110)")
        if self.arch == "vgg" and self.depth != 9:
            raise ValueError(f"vgg depth {self.depth} is not supported; only VGG-9 (depth=9) is built")
        for name in ("width", "batch_size", "epochs", "image_size", "n_train", "n_test"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup={self.warmup} must be a fraction in [0, 1)")
        if any(not 0.0 < m <= 1.0 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones={self.milestones} must be increasing fractions in (0, 1]")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr} must be positive")
        if not self.clip_grad_norm >= 0:
            raise ValueError(f"clip_grad_norm={self.clip_grad_norm} must be >= 0 (0: no clipping)")

    @property
    def model_name(self) -> str:
        """``resnet56``, ``resnet56-noshort`` or ``vgg9``; the width appears when it is not 1."""
        name = f"{self.arch}{self.depth}"
        if self.arch == "resnet" and not self.shortcut:
            name += "-noshort"
        if self.width != 1:
            name += f"-w{self.width}"
        return name

    @property
    def usual_lr(self) -> float:
        """The peak learning rate of this optimizer's recipe (Adam 0.01 as the seed's, SGD 0.1 as the
        authors'). Another shows up in :attr:`config_id` (``-lr0.05``)."""
        return RECIPE_LR[self.optimizer]

    @property
    def usual_init(self) -> str:
        """The seed recipe's init for this net (``he_normal``; ``normal`` for a ResNet without shortcuts).
        Another init shows up in :attr:`config_id` (``-authors``)."""
        return "normal" if self.arch == "resnet" and not self.shortcut else "he_normal"

    @property
    def config_id(self) -> str:
        """Readable id for pytest ids and file stems, e.g. ``resnet56-noshort-bs128-s0``.

        An SGD recipe and a weight decay show up (``resnet20-sgd-wd0.0005-bs128-s0``), so the seed
        and the filter-normalisation experiment's nets of one scale never share an id; so does an init
        other than :attr:`usual_init` (``resnet56-noshort-sgd-wd0.0005-authors-bs128-s0``) and a peak lr
        other than :attr:`usual_lr` (``resnet56-noshort-sgd-wd0.0005-lr0.05-authors-bs128-s0``: two nets
        of one recipe at two learning rates would otherwise share their files). Not unique across data
        sizes; :attr:`config_hash` is the cache key.
        """
        recipe = "-sgd" if self.optimizer == "sgd" else ""
        if self.weight_decay:
            recipe += f"-wd{self.weight_decay:g}"
        if self.lr != self.usual_lr:
            recipe += f"-lr{self.lr:g}"
        if self.init != self.usual_init:
            recipe += f"-{self.init}"
        if self.clip_grad_norm:
            recipe += f"-clip{self.clip_grad_norm:g}"
        layout = "-cl" if self.channels_last else ""
        return f"{self.model_name}{recipe}-bs{self.batch_size}-s{self.seed}{layout}"

    @property
    def data_params(self) -> dict[str, float]:
        """The synthetic data set's parameters that differ from ``synthetic``'s ({} for CIFAR-10)."""
        return dict(SYNTHETIC_DATASETS.get(self.dataset, {}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists); ``channels_last`` and ``clip_grad_norm`` only when on and
        ``data_params`` only for a synthetic data set other than ``synthetic`` (hashes of the configs made
        before any of them existed stay valid)."""
        out = json.loads(json.dumps(dataclasses.asdict(self)))
        if not out["channels_last"]:
            del out["channels_last"]
        if not out["clip_grad_norm"]:
            del out["clip_grad_norm"]
        if self.data_params:
            out["data_params"] = self.data_params
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them, and ``data_params`` that
        differ from the named data set's (a file written before its parameters changed) too."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"data_params"})
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {unknown}; expected some of {sorted(known)}")
        kwargs = {k: v for k, v in data.items() if k != "data_params"}
        for key in ("betas", "milestones"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        config = cls(**kwargs)
        stored = data.get("data_params", {})
        if stored != config.data_params:
            raise ValueError(f"the data set {config.dataset!r} was made with parameters {stored}, but this version "
                             f"of lossbench makes it with {config.data_params}: the config belongs to another version")
        return config

    @property
    def config_hash(self) -> str:
        """sha256 of the canonical JSON of all fields: the cache key."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def seed_recipe(
    *, arch: str = "resnet", depth: int = 20, shortcut: bool = True, batch_size: int = 128, **overrides: Any
) -> RunConfig:
    """The project's recipe: Adam(0.9, 0.999, eps 1e-7), lr 0.01, step decay /10 at 50/75/91.7 %.

    He-normal init for nets with shortcuts, normal init (N(0, 0.05^2)) for nets without.
    """
    init = "he_normal" if shortcut or arch != "resnet" else "normal"
    base = dict(
        arch=arch, depth=depth, shortcut=shortcut, batch_size=batch_size, optimizer="adam", lr=RECIPE_LR["adam"],
        betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0, epochs=300, milestones=PAPER_MILESTONES,
        init=init, augment=False,
    )
    base.update(overrides)
    return RunConfig(**base)


def paper_recipe(
    *, arch: str = "resnet", depth: int = 56, shortcut: bool = True, batch_size: int = 128, **overrides: Any
) -> RunConfig:
    """The authors' CIFAR-10 recipe (their ``cifar10/main.py``): SGD Nesterov 0.9, lr 0.1, wd 5e-4, 300
    epochs, lr x 0.1 at epochs 150, 225 and 275, crop + flip, and their ``init_params`` (``init="authors"``:
    Kaiming-normal fan-in for every convolution, with or without shortcuts; N(0, 1e-3^2) for the linear
    layer; BatchNorm weight 1, bias 0)."""
    base = dict(
        arch=arch, depth=depth, shortcut=shortcut, batch_size=batch_size, optimizer="sgd", lr=RECIPE_LR["sgd"],
        momentum=0.9, nesterov=True, weight_decay=5e-4, epochs=300, milestones=PAPER_MILESTONES,
        init="authors", augment=True, dataset="cifar10", image_size=32,
        n_train=50_000, n_test=10_000,
    )
    base.update(overrides)
    return RunConfig(**base)


@dataclass(frozen=True)
class Scale:
    """One scale of the reproduction: its config matrix and its surface settings.

    Attributes:
        name: ``ci``, ``small`` or ``paper``.
        configs: the matrix, in a fixed order.
        surface_x, surface_y: grid axes in the authors' ``min:max:num`` notation.
        eval_samples: training images used to evaluate each grid point (the first N of the train split).
        eval_batch: images per forward pass of the surfaces (the last batch may be smaller; the loss is
            the size-weighted mean over batches, so this changes the numbers only at float precision).
        hessian_samples: training images of the Hessian at the minimum (Lanczos and Hutchinson).
        hessian_batch: images per batch of a Hessian-vector product; fewer than ``hessian_samples``,
            so the mean over batches is exercised.
        eig_map: axis (both directions) of the Hessian eigen-ratio maps, ``min:max:num``.
        trajectory_grid: points per axis of the surface on the PCA plane of the training path.
        description: one line for ``--help`` and the report.
        normalization_configs: the filter-normalisation experiment (paper section 4, Figures 2-3):
            the same net trained with SGD at a small and a large batch, with and without weight decay.
        shipped: the nets are trained once and shipped under ``baselines/<scale>/nets/``; the suite
            loads them (sha256-verified) instead of training.
        dir_pairs: independent direction pairs per net; pair k uses seeds 2k (delta) and 2k+1 (eta).
        engine: grid engine of the suite's surfaces (``reference`` or ``fast``; same numbers to ~1e-6).
        line_x: the 1D random lines of the filter-normalisation experiment (``min:max:num``).
        interp_x: the 1D interpolation from the small- to the large-batch solution (``min:max:num``).
        eig_samples: training images of the Hessian in the eigen-ratio maps.
        eig_max_iter: Lanczos steps per eigen-ratio map point.
        spectrum_samples: training images of the Hessian whose spectrum the baselines store (per image
            subset: the first subset is checked by the main job, the second gives the sampling error).
        spectrum_probes, spectrum_steps: the stochastic Lanczos quadrature of those spectra.
        no_spectrum: config ids of the matrix whose spectra the suite does not store (the reason is
            written beside the scale); :attr:`spectrum_configs` are the others.
        eig_map_check: the main job recomputes every ``eig_map_check``-th point of the eigen-ratio map
            along each axis (1: every point) when the map's baseline stores every point; the others are
            the stored values (computed, with their tolerances, when the baselines were written).
        pair_check: the main job recomputes the first ``pair_check`` direction pairs of each shipped net
            where its baseline stores every pair's surface metrics for the same weights; the others are
            the stored values (computed, with their tolerances, when the baselines were written;
            ``--lossbench-all-pairs`` recomputes them). None: every pair.
        gpu_configs: nets trained only where a GPU is at hand (hours on the CPU): the paper's deepest
            nets and its wider ones (Figure 6). Selected by id (``train --all --only``, ``ship``); not
            part of :attr:`all_configs`, so nothing on the CPU path trains them unasked.
        authors_configs: a matrix under the authors' recipe while it is being trained: selected by id like
            :attr:`gpu_configs` until every seed of it is shipped and the claims judge it, then moved into
            ``configs`` with the regeneration of the claims (as the small scale's clipped one was).
        connect_configs: configs of the matrix whose training seeds are joined by mode-connecting curves
            (Garipov et al. 2018): one curve per seed pair, trained when the baselines are written.
        connect_points: points of t in [0, 1] (both ends included) along each stored path.
        connect_epochs: passes over the curve's training images (``connect_samples``, in minibatches of
            the config's batch size) that train a curve, one t ~ U(0, 1) per step.
        connect_lr: SGD learning rate of the curve's control point (momentum 0.9).
        connect_samples: images of each split along the paths (train: the curve's training set too).
        connect_check_t: the points of the stored curve the main job recomputes and checks.
    """

    name: str
    configs: tuple[RunConfig, ...]
    surface_x: str
    surface_y: str
    eval_samples: int
    eval_batch: int = 500
    hessian_samples: int = 128
    hessian_batch: int = 64
    eig_map: str = "-1:1:11"
    trajectory_grid: int = 21
    description: str = ""
    notes: tuple[str, ...] = field(default=())
    normalization_configs: tuple[RunConfig, ...] = field(default=())
    shipped: bool = False
    dir_pairs: int = 1
    engine: str = "reference"
    line_x: str = "-1:1:21"
    interp_x: str = "-0.5:1.5:21"
    eig_samples: int = 128
    eig_max_iter: int = 60
    eig_map_check: int = 1
    pair_check: int | None = None
    spectrum_samples: int = 64
    spectrum_probes: int = 2
    spectrum_steps: int = 30
    no_spectrum: tuple[str, ...] = ()
    gpu_configs: tuple[RunConfig, ...] = field(default=())
    authors_configs: tuple[RunConfig, ...] = field(default=())
    connect_configs: tuple[RunConfig, ...] = field(default=())
    connect_points: int = 11
    connect_epochs: float = 20.0
    connect_lr: float = 0.01
    connect_samples: int = 2000
    connect_check_t: tuple[float, ...] = (0.25, 0.5, 0.75)

    @property
    def all_configs(self) -> tuple[RunConfig, ...]:
        """The matrix followed by the filter-normalisation experiment's nets."""
        return self.configs + self.normalization_configs

    @property
    def eig_map_configs(self) -> tuple[RunConfig, ...]:
        """The nets whose eigen-ratio maps the suite stores (Figure 7): ResNet-56 with and without
        shortcuts at batch 128, of each recipe whose depth matrix is in :attr:`all_configs`."""
        return tuple(c for c in self.configs + self.authors_configs if c in self.all_configs and self.has_eig_map(c))

    @property
    def spectrum_configs(self) -> tuple[RunConfig, ...]:
        """The nets of the matrix whose Hessian spectra the suite stores and the main job checks."""
        return tuple(c for c in self.configs if c.config_id not in self.no_spectrum)

    @staticmethod
    def has_eig_map(config: RunConfig) -> bool:
        """Whether ``config`` is one of a recipe's pair whose eigen-ratio maps the suite stores (Figure 7:
        ResNet-56, with or without shortcuts, at batch 128)."""
        return (config.arch, config.depth, config.width, config.batch_size) == ("resnet", 56, 1, 128)

    @property
    def known_configs(self) -> tuple[RunConfig, ...]:
        """Every config a config id of this scale may name: :attr:`all_configs`, :attr:`gpu_configs` and
        :attr:`authors_configs`."""
        return self.all_configs + self.gpu_configs + self.authors_configs


def _matrix(depths: tuple[int, ...], batch_sizes: tuple[int, ...], **common: Any) -> tuple[RunConfig, ...]:
    return tuple(
        seed_recipe(depth=depth, shortcut=shortcut, batch_size=bs, **common)
        for depth in depths
        for shortcut in (True, False)
        for bs in batch_sizes
    )


# ci: tests the pipeline, not the science. 2048 synthetic 16x16 images so that batch 2000 is one
# step per epoch (a real large-batch step, not a capped one); 6 epochs (96 steps at batch 128, 6 at batch 2000).
_CI_DATA = dict(dataset="synthetic", image_size=16, n_train=2048, n_test=512)
# small: the harder data set, 4 000 training images (so that the nets generalise differently) and 5 000
# test images (a test error of 5 % is known to +-0.3 %); 120 epochs, so that every net takes as many
# steps as the former 8 000 images for 60 epochs (3 720 at batch 128, 240 at batch 2000: enough for
# every net to leave the initial plateau). A 5 % linear warm-up is the one bend of the recipe.
_SMALL_DATA = dict(dataset="synthetic-hard", image_size=16, n_train=4000, n_test=5000)
_SMALL_EPOCHS = 120
# The authors' recipe at the small scale: their 300 epochs (9 300 steps at batch 128; ResNet-56 without
# shortcuts sits at chance for the first ~1 100-1 400 steps whatever the lr, and 120 epochs left it too few
# steps at lr 0.1 after that: benchmarks/RESULTS.md) and a 20 % linear warm-up (at 5 % seed 1 of ResNet-56
# without shortcuts never left chance; at 20 % seeds 0-2 all reached train accuracy >= 0.985); no
# augmentation, as in the rest of the scale.
_AUTHORS_SMALL = dict(epochs=300, warmup=0.2, augment=False)
# And each step's loss gradient clipped to a global norm of 5 (issue 32). Under the 20 % warm-up alone
# every shipped seed of the plain ResNet-56 fell back towards chance at lr 0.1 at least once by epoch 72
# (lossbench.train.falls; 8 of 8 on the EPYC) and 4 of 8 ended short of a minimum; with the clip no seed of
# three fell by epoch 80 (one fell once, at epoch 121, and came back) and all three reached a minimum,
# while it bound on about 1 % of the steps after the warm-up (benchmarks/RESULTS.md; the unclipped
# matrix's provenance is kept in baselines/small/retired/).
_AUTHORS_CLIP = 5.0

SCALES: dict[str, Scale] = {
    "ci": Scale(
        name="ci",
        configs=_matrix((20, 56), (128, 2000), epochs=6, **_CI_DATA),
        surface_x="-1:1:11",
        surface_y="-1:1:11",
        # 128 images in batches of 100 and a Hessian over 64 in batches of 40: unequal last batches (the
        # mutation tests need them), and the suite's share of the ci surfaces and Hessians a quarter
        # and a half of what 512 and 128 images cost
        eval_samples=128,
        eval_batch=100,
        hessian_samples=64,
        hessian_batch=40,
        eig_map="-0.5:0.5:3",
        trajectory_grid=11,
        # the engine the main job uses (its baselines' tol covers both engines: a recompute variant)
        engine="fast",
        description="CPU, synthetic 16x16, 2048 images, 6 epochs, surfaces over 128: exercises the pipeline in minutes",
    ),
    "small": Scale(
        name="small",
        # the seed recipe's depth matrix, then the authors' (issue 32: their recipe and init, 300 epochs
        # (9 300 steps) with a 20 % linear warm-up and a gradient clip at norm 5, the two changes to their
        # schedule, calibrated in benchmarks/RESULTS.md: with 5 % the plain ResNet-56 stayed at chance at a
        # seed, and without the clip it fell back towards chance at every seed; batch 128, three seeds
        # each), each recipe's nets compared only with each other (lossbench.claims)
        configs=(*_matrix((20, 56), (128, 2000), epochs=_SMALL_EPOCHS, warmup=0.05, **_SMALL_DATA),
                 *(paper_recipe(depth=d, shortcut=s, batch_size=128, clip_grad_norm=_AUTHORS_CLIP,
                                **_AUTHORS_SMALL, **_SMALL_DATA)
                   for d in (20, 56) for s in (True, False))),
        # the main job's resolution, sized to run in minutes on 2 CPU cores (docs/reproduction.md: how to run finer)
        surface_x="-1:1:11",
        surface_y="-1:1:11",
        eval_samples=400,
        eig_map="-1:1:5",
        # 9 of the 25 map points in the main job (the corners, edge midpoints and centre): the two maps were
        # 12 of its 13.5 minutes; the other 16 come from the baseline, each checked when it was written
        eig_map_check=2,
        # the spectra of the baselines: 250 images, 2 probes x 60 steps and the top 16 eigenpairs, about
        # 250 Hessian-vector products per image subset (docs/speed.md: a ResNet-56 product over 500 images
        # is some 6 s on one loaded core)
        spectrum_samples=250,
        spectrum_probes=2,
        spectrum_steps=60,
        # not the seed recipe's ResNet-56s: without shortcuts they reach no minimum at any seed, with them
        # at batch 2000 only at some, so every spectrum claim on them would be inconclusive by rule; the
        # authors'-recipe ResNet-56 pair, at a minimum at every seed, stands for depth 56. That spares four
        # SLQ runs of some 40 minutes each and 4 x ~20 s of the main job.
        no_spectrum=("resnet56-bs128-s0", "resnet56-bs2000-s0", "resnet56-noshort-bs128-s0",
                     "resnet56-noshort-bs2000-s0"),
        trajectory_grid=11,
        shipped=True,
        dir_pairs=3,
        # the main job recomputes pair 0 of each net (timed) and takes pairs 1-2 from the baseline: the
        # authors' matrix made it some 17 minutes on 2 cores with every pair (docs/speed.md)
        pair_check=1,
        engine="fast",
        # 32 images in one batch: a Hessian-vector product costs ~10 forward passes on the CPU, and at
        # 64 images in two batches the two 7x7 maps alone took 6 of the main job's 17 minutes. Each point
        # runs Lanczos until both ends are within 1e-3 of their own size (30-40 steps on these nets), so
        # the maps are 5x5 (the main job's 15 minutes)
        eig_samples=32,
        eig_max_iter=60,
        description="synthetic-hard 16x16, 4000 training images, 120 epochs (3 720 steps at batch 128); shipped nets",
        # The authors' SGD recipe (Nesterov 0.9, lr 0.1, same milestones) at batch 128 and 2000, with
        # and without weight decay; no augmentation (the synthetic shapes need none to be learnt, and
        # the seed matrix has none either), and the same 5 % warm-up as the matrix; He-normal init for the
        # linear layer too (as they were trained, before paper_recipe took the authors' 1e-3 readout).
        normalization_configs=tuple(
            paper_recipe(depth=20, batch_size=bs, weight_decay=wd, epochs=_SMALL_EPOCHS, warmup=0.05, augment=False,
                         init="he_normal", **_SMALL_DATA)
            for wd in (0.0, 5e-4)
            for bs in (128, 2000)
        ),
        # mode connectivity on ResNet-20 with and without shortcuts at batch 128: seeds 0-1, 0-2 and 1-2;
        # 40 passes at lr 0.03 (seeds 0-1 with shortcuts: 20 passes at lr 0.01 left a barrier of 0.84 of
        # the line's 4.39 nats, 40 at 0.03 one of 0.19 +- 0.02; each curve about 3 minutes on one core)
        connect_epochs=40.0,
        connect_lr=0.03,
        connect_configs=tuple(seed_recipe(depth=20, shortcut=s, batch_size=128, epochs=_SMALL_EPOCHS, warmup=0.05,
                                          **_SMALL_DATA) for s in (True, False)),
        # the paper's most chaotic case (ResNet-110 without shortcuts, Figure 5) and its wider nets
        # (Figure 6: ResNet-56 at widths 2 and 4 is flatter and more convex), seed recipe, batch 128
        gpu_configs=(
            *(seed_recipe(depth=110, shortcut=s, batch_size=128, epochs=_SMALL_EPOCHS, warmup=0.05, **_SMALL_DATA)
              for s in (True, False)),
            *(seed_recipe(depth=56, width=w, batch_size=128, epochs=_SMALL_EPOCHS, warmup=0.05, **_SMALL_DATA)
              for w in (2, 4)),
        ),
    ),
    "paper": Scale(
        name="paper",
        configs=tuple(
            seed_recipe(depth=d, shortcut=s, batch_size=bs, dataset="cifar10", image_size=32)
            for d in (20, 56, 110)
            for s in (True, False)
            for bs in (128, 2000)
        ),
        surface_x="-1:1:51",
        surface_y="-1:1:51",
        eval_samples=50_000,
        eig_map="-1:1:21",
        trajectory_grid=51,
        description="GPU, CIFAR-10, the seed recipe for 300 epochs, 51x51 grids over the train set",
    ),
}


def get_scale(name: str) -> Scale:
    """The :class:`Scale` called ``name``; an unknown name is an error listing the valid ones."""
    try:
        return SCALES[name]
    except KeyError:
        raise ValueError(f"unknown scale {name!r}; expected one of {', '.join(SCALES)}") from None


def find_config(scale: str, *, arch: str = "resnet", depth: int, shortcut: bool, batch_size: int, seed: int = 0) -> RunConfig:
    """The config of ``scale``'s matrix with these settings (seed replaced if given)."""
    for cfg in get_scale(scale).configs:
        if (cfg.arch, cfg.depth, cfg.shortcut, cfg.batch_size) == (arch, depth, shortcut, batch_size):
            return cfg.replace(seed=seed)
    choices = ", ".join(c.config_id for c in get_scale(scale).configs)
    raise ValueError(
        f"no config {arch}{depth} shortcut={shortcut} batch_size={batch_size} in scale {scale!r}; it has {choices}"
    )


def parse_model_name(name: str) -> tuple[str, int]:
    """``resnet56`` -> ("resnet", 56); ``vgg9`` -> ("vgg", 9)."""
    for arch in ARCHS:
        if name.startswith(arch) and name[len(arch):].isdigit():
            return arch, int(name[len(arch):])
    raise ValueError(f"unknown model {name!r}; expected resnet<6n+2> (e.g. resnet20, resnet56, resnet110) or vgg9")


#: The evaluation dtypes: float32 (what the nets were trained and the baselines measured in) and
#: float64, the truth a platform's float32 result is held against.
DTYPES: tuple[str, ...] = ("float32", "float64")


def add_dtype_option(addoption: Any, prefix: str = "") -> None:
    """``--[prefix]dtype``, shared by the pytest plugin and the CLI's surface and hessian commands."""
    addoption(f"--{prefix}dtype", default="float32", choices=list(DTYPES),
              help="evaluate the model and the data in this dtype (default float32); float64 recomputes a "
                   "float32 result in double precision: the same baselines must pass")


def add_run_options(addoption: Any, prefix: str = "") -> None:
    """Options shared by the pytest plugin (``prefix="lossbench-"``) and the CLI (no prefix).

    ``addoption`` is ``parser.addoption`` of pytest or ``add_argument`` of argparse: both take these.
    """
    addoption(f"--{prefix}scale", default=None if prefix else "ci", choices=list(SCALES),
              help="reproduction scale: ci (retrains the matrix on the CPU in minutes), small (the shipped "
                   "reference nets, trained once), paper (CIFAR-10, GPU); default "
                   + ("small for `pytest benchmarks`, ci otherwise" if prefix else "ci"))
    addoption(f"--{prefix}device", default="cpu",
              help="torch device for training and evaluation, e.g. cpu, cuda, cuda:1; default cpu")
    addoption(f"--{prefix}cache-dir", default=None,
              help="root of the trained-model cache; default $LOSSBENCH_CACHE_DIR or ~/.cache/lossbench")
    addoption(f"--{prefix}data-dir", default=None,
              help="folder holding cifar-10-batches-py (only for the cifar10 data set)")
