"""Data sets as whole tensors: the embedded synthetic default and CIFAR-10.

Images are preprocessed once (float32, per-channel normalised with the training split's statistics,
the same for training and evaluation) and kept as tensors: no DataLoader, no workers, and evaluation
always runs in the stored order.

``synthetic`` draws ten shape classes (disk, square, ring, plus, cross, triangle, hollow square,
horizontal bars, vertical bars, diamond) at random position, size, small rotation, colour and
polarity, on a noisy background with a random ramp. The class lives only in the shape, so it needs
spatial features: a linear classifier on raw pixels does far worse than a small ResNet (docs/reproduction.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .config import SYNTHETIC_DATASETS, RunConfig
from .errors import DataError

NUM_CLASSES = 10
SYNTHETIC_CLASSES = (
    "disk", "square", "ring", "plus", "cross", "triangle", "hollow-square", "h-bars", "v-bars", "diamond",
)
MAX_SYNTHETIC = 60_000
_CHUNK = 1000  # images per independently seeded chunk: a smaller draw is a prefix of a larger one

# The authors' CIFAR-10 normalisation (cifar10/dataloader.py): per-channel mean and std over 0-255.
CIFAR10_MEAN = tuple(v / 255.0 for v in (125.3, 123.0, 113.9))
CIFAR10_STD = tuple(v / 255.0 for v in (63.0, 62.1, 66.7))
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"


@dataclass(frozen=True)
class ImageData:
    """A train/test pair of input tensors, already normalised.

    Attributes:
        x_train: (N_train, 3, H, W) float32, per-channel normalised (a user's data: (N_train, ...) float).
        y_train: (N_train,) int64 class labels in [0, 10) (a user's data: int64 labels or float targets).
        x_test, y_test: the same for the test split (empty where a user's data has one split).
        mean, std: the per-channel statistics used, in [0, 1] pixel units (empty for a user's data).
        name: ``synthetic``, ``cifar10`` or ``user:<what the user named>``.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str

    def to(self, dtype: torch.dtype) -> "ImageData":
        """A copy whose floating-point inputs (and float targets) are ``dtype``: float64 holds a
        float32 result against the truth (``--dtype float64``); class labels stay int64."""
        def cast(t: Tensor) -> Tensor:
            return t.to(dtype) if t.is_floating_point() else t

        return dataclasses.replace(self, x_train=cast(self.x_train), y_train=cast(self.y_train),
                                   x_test=cast(self.x_test), y_test=cast(self.y_test))

    def split(self, which: str) -> tuple[Tensor, Tensor]:
        """(x, y) of ``train`` or ``test``."""
        if which == "train":
            return self.x_train, self.y_train
        elif which == "test":
            if len(self.x_test) == 0:
                raise DataError(f"{self.name} has no test split; evaluate train only, or give a data set with "
                                "test_x and test_y")
            return self.x_test, self.y_test
        else:
            raise ValueError(f"unknown split {which!r}; expected train or test")


@dataclass(frozen=True)
class SyntheticSpec:
    """How the synthetic images vary; the defaults are the ``synthetic`` data set (the ``ci`` scale's).

    Attributes:
        size_min, size_range: the shape's half-extent is uniform in [size_min, size_min + size_range],
            as a fraction of the image side.
        max_angle: rotation uniform in [-max_angle, max_angle], degrees. Beyond about 22 degrees a
            rotated square can look like a diamond and a plus like a cross: the classes overlap.
        contrast_min, contrast_range: per-channel foreground offset from the background, in [0, 1] pixel
            units, uniform in [contrast_min, contrast_min + contrast_range].
        pixel_noise: standard deviation of the i.i.d. Gaussian pixel noise, [0, 1] pixel units.
        label_noise: fraction of *training* labels replaced by another class, uniformly (test labels
            stay true), so fitting the training set means memorising them.
    """

    size_min: float = 0.20
    size_range: float = 0.10
    max_angle: float = 15.0
    contrast_min: float = 0.35
    contrast_range: float = 0.30
    pixel_noise: float = 0.06
    label_noise: float = 0.0

    @classmethod
    def named(cls, dataset: str) -> "SyntheticSpec":
        """The spec of a synthetic data set named in :data:`lossbench.config.SYNTHETIC_DATASETS`."""
        if dataset not in SYNTHETIC_DATASETS:
            raise ValueError(f"unknown synthetic data set {dataset!r}; expected one of {', '.join(SYNTHETIC_DATASETS)}")
        return cls(**SYNTHETIC_DATASETS[dataset])


def load_dataset(config: RunConfig, *, data_dir: str | Path | None = None, download: bool = False) -> ImageData:
    """The data set a :class:`RunConfig` asks for."""
    if config.dataset in SYNTHETIC_DATASETS:
        return make_synthetic(n_train=config.n_train, n_test=config.n_test, image_size=config.image_size,
                              seed=config.data_seed, spec=SyntheticSpec.named(config.dataset), name=config.dataset)
    elif config.dataset == "cifar10":
        if config.image_size != 32:
            raise ValueError(f"cifar10 images are 32x32; got image_size={config.image_size}")
        if data_dir is None:
            raise DataError("cifar10 needs a data directory: pass data_dir (CLI: --data-dir DIR), the folder that "
                            f"holds '{CIFAR10_FOLDER}'")
        return load_cifar10(data_dir, n_train=config.n_train, n_test=config.n_test, download=download)
    else:
        raise ValueError(f"unknown dataset {config.dataset!r}; expected one of {', '.join(SYNTHETIC_DATASETS)}, cifar10")


# ----------------------------------------------------------------------------- synthetic


def _shape_distance(cls: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Signed distance-like field (<0 inside) of each sample's shape, in units of its size.

    Args:
        cls: (N,) int64 class of each sample.
        u, v: (N, H, W) float32 coordinates in the sample's frame (v points down).
    """
    au, av = u.abs(), v.abs()
    r = torch.sqrt(u * u + v * v)
    # 45-degree rotated frame for the diagonal cross
    p, q = (u + v).abs() / math.sqrt(2), (u - v).abs() / math.sqrt(2)
    fields = torch.stack(
        [
            r - 1.0,  # disk
            torch.maximum(au, av) - 0.85,  # square
            (r - 0.8).abs() - 0.25,  # ring
            torch.minimum(torch.maximum(au - 1, av - 0.3), torch.maximum(au - 0.3, av - 1)),  # plus
            torch.minimum(torch.maximum(p - 1, q - 0.3), torch.maximum(p - 0.3, q - 1)),  # cross
            torch.maximum(v - 0.5, -0.5 * v + 0.866 * au - 0.5),  # triangle, apex up
            (torch.maximum(au, av) - 0.75).abs() - 0.2,  # hollow square
            torch.maximum(au - 1.0, (av - 0.5).abs() - 0.22),  # two horizontal bars
            torch.maximum(av - 1.0, (au - 0.5).abs() - 0.22),  # two vertical bars
            au + av - 1.1,  # diamond
        ]
    )  # (10, N, H, W)
    return fields.gather(0, cls.view(1, -1, 1, 1).expand(1, *u.shape)).squeeze(0)


def _synthetic_chunk(n: int, image_size: int, generator: torch.Generator, first_label: int,
                     spec: SyntheticSpec = SyntheticSpec()) -> tuple[Tensor, Tensor]:
    """``n`` images in [0, 1], (n, 3, S, S) float32, and their true labels (cyclic from ``first_label``)."""
    g = generator
    labels = (torch.arange(n) + first_label) % NUM_CLASSES
    size = spec.size_min + spec.size_range * torch.rand(n, generator=g)  # half-extent, fraction of the side
    centre = 0.32 + 0.36 * torch.rand(n, 2, generator=g)
    angle = (torch.rand(n, generator=g) - 0.5) * math.radians(2 * spec.max_angle)
    background = torch.rand(n, 3, generator=g)
    polarity = torch.where(background.mean(1, keepdim=True) < 0.5, 1.0, -1.0)
    contrast = spec.contrast_min + spec.contrast_range * torch.rand(n, 3, generator=g)
    foreground = (background + polarity * contrast).clamp(0, 1)
    ramp = 0.2 * (torch.rand(n, 2, generator=g) - 0.5)
    noise = spec.pixel_noise * torch.randn(n, 3, image_size, image_size, generator=g)

    pix = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size  # pixel centres in (0, 1)
    yy, xx = torch.meshgrid(pix, pix, indexing="ij")  # (S, S), y is the row
    dx = xx.unsqueeze(0) - centre[:, 0, None, None]
    dy = yy.unsqueeze(0) - centre[:, 1, None, None]
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    s = size[:, None, None]
    u = (cos * dx + sin * dy) / s
    v = (-sin * dx + cos * dy) / s
    dist = _shape_distance(labels, u, v)
    pixel = 1.0 / (image_size * s)  # one pixel in shape units: antialias over one pixel
    mask = (0.5 - dist / pixel).clamp(0, 1).unsqueeze(1)  # (n, 1, S, S)

    bg = background[:, :, None, None] + (ramp[:, 0, None, None] * (xx - 0.5) + ramp[:, 1, None, None] * (yy - 0.5)).unsqueeze(1)
    images = bg * (1 - mask) + foreground[:, :, None, None] * mask + noise
    return images.clamp(0, 1), labels


def _noisy_labels(labels: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """Each label replaced, with probability ``rate``, by one of the nine other classes (uniformly)."""
    flip = torch.rand(len(labels), generator=generator) < rate
    other = (labels + torch.randint(1, NUM_CLASSES, (len(labels),), generator=generator)) % NUM_CLASSES
    return torch.where(flip, other, labels)


def synthetic_images(n: int, *, image_size: int = 32, seed: int = 0, split: str = "train",
                     spec: SyntheticSpec = SyntheticSpec()) -> tuple[Tensor, Tensor]:
    """Raw synthetic images in [0, 1] and labels, before normalisation.

    Args:
        n: number of images, 1..60 000; true labels cycle 0..9 so any multiple of 10 is exactly balanced.
        image_size: side in pixels (>= 8).
        seed: data seed; ``split`` makes train and test independent draws.
        spec: how the images vary (:class:`SyntheticSpec`); its ``label_noise`` applies to ``train`` only,
            so test labels are always the true classes.

    Returns:
        x: (n, 3, image_size, image_size) float32 in [0, 1]; y: (n,) int64.
    """
    if not 1 <= n <= MAX_SYNTHETIC:
        raise ValueError(f"synthetic data set size {n} out of range; expected 1..{MAX_SYNTHETIC}")
    if image_size < 8:
        raise ValueError(f"image_size={image_size} too small for the synthetic shapes; expected >= 8")
    split_index = {"train": 0, "test": 1}.get(split)
    if split_index is None:
        raise ValueError(f"unknown split {split!r}; expected train or test")
    xs, ys = [], []
    for chunk, start in enumerate(range(0, n, _CHUNK)):
        chunk_seed = ((seed * 2 + split_index) * 100_003 + chunk) % (2**63)
        x, y = _synthetic_chunk(_CHUNK, image_size, torch.Generator().manual_seed(chunk_seed), start, spec)
        if spec.label_noise and split == "train":
            # a generator of its own: the images of a noisy spec are those of the same spec without noise
            y = _noisy_labels(y, spec.label_noise, torch.Generator().manual_seed(chunk_seed ^ 0x5EED))
        take = min(_CHUNK, n - start)
        xs.append(x[:take])
        ys.append(y[:take])
    return torch.cat(xs), torch.cat(ys)


def make_synthetic(*, n_train: int, n_test: int, image_size: int = 32, seed: int = 0,
                   spec: SyntheticSpec = SyntheticSpec(), name: str = "synthetic") -> ImageData:
    """The embedded data set: independent train and test draws, normalised by the train statistics.

    A pure function of its arguments, drawn once per process and handed out as copies: drawing the
    ``small`` scale's 10 000 images takes about 2 s, and a session asks for them dozens of times.
    """
    data = _synthetic_memo(n_train, n_test, image_size, seed, spec, name)
    return dataclasses.replace(data, x_train=data.x_train.clone(), y_train=data.y_train.clone(),
                               x_test=data.x_test.clone(), y_test=data.y_test.clone())


@functools.lru_cache(maxsize=4)
def _synthetic_memo(n_train: int, n_test: int, image_size: int, seed: int, spec: SyntheticSpec,
                    name: str) -> ImageData:
    x_train, y_train = synthetic_images(n_train, image_size=image_size, seed=seed, split="train", spec=spec)
    x_test, y_test = synthetic_images(n_test, image_size=image_size, seed=seed, split="test", spec=spec)
    mean = tuple(float(m) for m in x_train.mean(dim=(0, 2, 3)))
    std = tuple(float(s) for s in x_train.std(dim=(0, 2, 3)))
    return ImageData(
        x_train=normalize(x_train, mean, std), y_train=y_train,
        x_test=normalize(x_test, mean, std), y_test=y_test,
        mean=mean, std=std, name=name,
    )


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(x - mean) / std per channel; x is (N, 3, H, W) in [0, 1]."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


# ----------------------------------------------------------------------------- CIFAR-10


#: The command that fetches CIFAR-10 into a folder (torchvision's downloader; needs internet).
_FETCH = "python -c \"import torchvision; torchvision.datasets.CIFAR10('{root}', download=True)\""


def load_cifar10(
    root: str | Path, *, n_train: int = 50_000, n_test: int = 10_000, download: bool = False
) -> ImageData:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (torchvision's folder and file format).

    With ``download=True`` torchvision fetches and checks the archive first. The batches are read here
    rather than through ``torchvision.datasets.CIFAR10`` so that the images become one tensor at once
    and a missing or damaged file gets an error that says where we looked and what to do.

    Returns:
        :class:`ImageData` with the authors' normalisation (mean 125.3/123.0/113.9, std 63.0/62.1/66.7
        over 255) and the first ``n_train`` / ``n_test`` images of each split.
    """
    root = Path(root)
    if download:
        import torchvision

        for train in (True, False):
            torchvision.datasets.CIFAR10(root=str(root), train=train, download=True)
    folder = root / CIFAR10_FOLDER
    expected = [*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE]
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 not found: looked in {folder} for {', '.join(expected)} and is missing "
            f"{', '.join(missing)}. Fetch it there with `{_FETCH.format(root=root)}` (needs internet), or point --data-dir "
            f"at the directory that contains '{CIFAR10_FOLDER}'."
        )
    x_train, y_train = _read_cifar_files([folder / name for name in CIFAR10_TRAIN_FILES])
    x_test, y_test = _read_cifar_files([folder / CIFAR10_TEST_FILE])
    for split, x, n in (("train", x_train, n_train), ("test", x_test, n_test)):
        if n > len(x):
            raise ValueError(f"asked for {n} {split} images but {folder} holds {len(x)}")
    x_train, y_train = x_train[:n_train], y_train[:n_train]
    x_test, y_test = x_test[:n_test], y_test[:n_test]
    return ImageData(
        x_train=normalize(x_train, CIFAR10_MEAN, CIFAR10_STD), y_train=y_train,
        x_test=normalize(x_test, CIFAR10_MEAN, CIFAR10_STD), y_test=y_test,
        mean=CIFAR10_MEAN, std=CIFAR10_STD, name="cifar10",
    )


#: The globals a CIFAR-10 python batch may name: numpy's array and scalar reconstruction, and the
#: codec Python 2 pickles use for bytes. Anything else (os.system, eval, ...) is refused unrun.
_CIFAR_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only what the CIFAR-10 format holds (dicts, lists, strings, bytes,
    numbers and numpy arrays): a crafted batch file cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused to load the global {module}.{name}: a CIFAR-10 batch holds only dicts, lists, strings, "
            "numbers and numpy arrays (the file may be crafted to run code)"
        )


def _read_cifar_files(paths: list[Path]) -> tuple[Tensor, Tensor]:
    """Read CIFAR-10 python batches: dicts with ``data`` (N, 3072) uint8 and ``labels`` (N,)."""
    xs, ys = [], []
    for path in paths:
        fix = f"delete {path.parent} and fetch it again with `{_FETCH.format(root=path.parent.parent)}`"
        try:
            with open(path, "rb") as fh:
                entry = _CifarUnpickler(fh, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
            raise DataError(f"corrupt CIFAR-10 file {path}: {type(exc).__name__}: {exc}; {fix}") from exc
        if isinstance(entry, dict):  # Python 3 pickles of the format may carry bytes keys
            entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
        if not isinstance(entry, dict) or "data" not in entry or ("labels" not in entry and "fine_labels" not in entry):
            raise DataError(f"corrupt CIFAR-10 file {path}: expected a dict with 'data' and 'labels'; {fix}")
        data = np.asarray(entry["data"])
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise DataError(
                f"corrupt CIFAR-10 file {path}: data {data.dtype} {data.shape} with {len(labels)} labels; "
                f"expected uint8 (N, 3072) with N labels; {fix}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise DataError(f"corrupt CIFAR-10 file {path}: labels outside 0..9; {fix}")
        xs.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0))
        ys.append(torch.from_numpy(labels.astype(np.int64)))
    return torch.cat(xs), torch.cat(ys)
