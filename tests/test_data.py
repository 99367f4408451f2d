import pickle

import numpy as np
import pytest
import torch

from lossbench.config import RunConfig
from lossbench.data import (
    CIFAR10_FOLDER,
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    load_cifar10,
    load_dataset,
    make_synthetic,
    synthetic_images,
)
from lossbench.errors import DataError


def test_synthetic_is_cifar_shaped_and_balanced():
    x, y = synthetic_images(200, image_size=32, seed=0)
    assert x.shape == (200, 3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.bincount(y, minlength=10).tolist() == [20] * 10


def test_synthetic_is_deterministic_and_prefix_stable():
    a, ya = synthetic_images(1500, image_size=16, seed=4)
    b, yb = synthetic_images(300, image_size=16, seed=4)
    assert torch.equal(a[:300], b) and torch.equal(ya[:300], yb)


def test_train_and_test_are_independent_draws():
    train, _ = synthetic_images(100, image_size=16, seed=0, split="train")
    test, _ = synthetic_images(100, image_size=16, seed=0, split="test")
    other, _ = synthetic_images(100, image_size=16, seed=1, split="train")
    assert not torch.allclose(train, test) and not torch.allclose(train, other)


def test_normalisation_uses_train_statistics_for_both_splits():
    d = make_synthetic(n_train=500, n_test=200, image_size=16)
    assert torch.allclose(d.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    raw_test, _ = synthetic_images(200, image_size=16, split="test")
    expect = (raw_test - torch.tensor(d.mean).view(1, 3, 1, 1)) / torch.tensor(d.std).view(1, 3, 1, 1)
    torch.testing.assert_close(d.x_test, expect)


@pytest.mark.parametrize("n, size, match", [(0, 16, "size 0"), (60_001, 16, "60000"), (10, 4, "image_size=4")])
def test_bad_synthetic_sizes_are_named(n, size, match):
    with pytest.raises(ValueError, match=match):
        synthetic_images(n, image_size=size)


def _linear_probe_test_acc(n_train: int, n_test: int, size: int) -> float:
    """Multinomial logistic regression on raw (normalised) pixels, L-BFGS, small L2."""
    d = make_synthetic(n_train=n_train, n_test=n_test, image_size=size)
    x, xt = d.x_train.flatten(1), d.x_test.flatten(1)
    w = torch.zeros(x.shape[1], 10, requires_grad=True)
    b = torch.zeros(10, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, d.y_train) + 1e-3 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xt @ w + b).argmax(1) == d.y_test).float().mean())


def test_synthetic_needs_spatial_features(tmp_path):
    """A linear classifier on raw pixels stays near chance; a small ResNet learns the shapes."""
    from lossbench.train import train

    linear = _linear_probe_test_acc(2048, 512, 16)
    cfg = RunConfig(depth=8, batch_size=64, epochs=3, n_train=2048, n_test=512, image_size=16)
    resnet = train(cfg, cache_dir=tmp_path).final["test_acc"]
    print(f"linear probe test acc {linear:.3f}, ResNet-8 test acc {resnet:.3f}")
    assert linear < 0.25
    assert resnet > linear + 0.3


# ----------------------------------------------------------------------------- CIFAR-10 format


def _write_cifar(root, n_per_file=4, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    for name in [*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE]:
        entry = {
            "batch_label": name,
            "data": rng.integers(0, 256, size=(n_per_file, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=n_per_file).tolist(),
            "filenames": [f"{name}_{i}.png" for i in range(n_per_file)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    return folder


def test_cifar10_reads_the_torchvision_format(tmp_path):
    folder = _write_cifar(tmp_path)
    d = load_cifar10(tmp_path, n_train=20, n_test=4)
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    with open(folder / CIFAR10_TRAIN_FILES[0], "rb") as fh:
        first = pickle.load(fh)
    raw = torch.from_numpy(first["data"][0].reshape(3, 32, 32).astype(np.float32) / 255)
    mean = torch.tensor(d.mean).view(3, 1, 1)
    std = torch.tensor(d.std).view(3, 1, 1)
    torch.testing.assert_close(d.x_train[0], (raw - mean) / std)
    assert d.y_train[:4].tolist() == first["labels"]


def test_cifar10_through_a_config(tmp_path):
    _write_cifar(tmp_path)
    cfg = RunConfig(dataset="cifar10", n_train=8, n_test=2)
    assert load_dataset(cfg, data_dir=tmp_path).x_train.shape[0] == 8
    with pytest.raises(DataError, match="needs a data directory"):
        load_dataset(cfg)


def test_missing_cifar10_says_where_it_looked(tmp_path):
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / CIFAR10_FOLDER) in message
    assert f"torchvision.datasets.CIFAR10('{tmp_path / 'nowhere'}', download=True)" in message


def test_corrupt_cifar10_file_is_named(tmp_path):
    folder = _write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="corrupt CIFAR-10 file .*data_batch_3"):
        load_cifar10(tmp_path, n_train=8, n_test=2)


def test_wrong_shape_cifar10_file_is_named(tmp_path):
    folder = _write_cifar(tmp_path)
    with open(folder / CIFAR10_TEST_FILE, "wb") as fh:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, fh)
    with pytest.raises(DataError, match="expected uint8 \\(N, 3072\\)"):
        load_cifar10(tmp_path, n_train=8, n_test=2)


class _Payload:
    """Unpickling this runs a shell command that creates a marker file (the attack of a crafted batch)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_crafted_cifar10_batch_never_runs_code(tmp_path, protocol):
    folder = _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_1", "wb") as fh:
        pickle.dump({"data": _Payload(marker), "labels": [0]}, fh, protocol=protocol)
    with pytest.raises(DataError, match="refused to load the global .*system"):
        load_cifar10(tmp_path, n_train=8, n_test=2)
    assert not marker.exists()


def test_python2_style_cifar10_batches_still_load(tmp_path):
    """The real files are protocol-2 pickles with bytes keys, a numpy array and lists."""
    folder = _write_cifar(tmp_path)
    rng = np.random.default_rng(1)
    entry = {b"batch_label": b"testing batch 1 of 1", b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
             b"labels": [1, 2, 3, 4], b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"]}
    with open(folder / CIFAR10_TEST_FILE, "wb") as fh:
        pickle.dump(entry, fh, protocol=2)
    d = load_cifar10(tmp_path, n_train=8, n_test=4)
    assert d.y_test.tolist() == [1, 2, 3, 4]


def test_the_synthetic_draw_is_remembered_but_handed_out_as_copies():
    """The draw is memoised per process (a session asks for it dozens of times); a caller that
    normalises or corrupts its tensors in place must not change what the next caller gets."""
    from lossbench.data import make_synthetic

    a = make_synthetic(n_train=64, n_test=16, image_size=16, seed=5)
    expected = a.x_train.clone(), a.y_test.clone()
    a.x_train.mul_(0)
    a.y_test.fill_(-1)
    b = make_synthetic(n_train=64, n_test=16, image_size=16, seed=5)
    assert torch.equal(b.x_train, expected[0]) and torch.equal(b.y_test, expected[1])
    assert not torch.equal(make_synthetic(n_train=64, n_test=16, image_size=16, seed=6).x_train, b.x_train)
