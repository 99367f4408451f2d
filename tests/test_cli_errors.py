"""Bad input on the command line: each case exits 2 with one line that names the problem and what
would be right, and writes no output file (issue "Nothing lost, nothing mixed, nothing run")."""

from pathlib import Path

import pytest

from lossbench.__main__ import main

SHIPPED = ["--scale", "small", "--arch", "resnet20"]  # a shipped reference net: nothing is trained

CASES = [
    # (argv, expected words in the one-line error)
    (["surface", *SHIPPED, "--x", "-1:1:3", "--eval-samples", "-5"], "eval_samples=-5: expected a positive number"),
    (["surface", *SHIPPED, "--x", "-1:1:3", "--eval-samples", "1000000"],
     "eval_samples=1000000 but the train split holds 4000 images; expected 1 to 4000"),
    (["surface", *SHIPPED, "--x", "-1:inf:3"], "min and max must be finite"),
    (["surface", *SHIPPED, "--x", "1:-1:3"], "need num >= 1 and max > min"),
    (["surface", *SHIPPED, "--x", "-1:1:20000", "--y", "-1:1:20000"], "at most 10001 points per axis"),
    (["surface", *SHIPPED, "--x", "1:2"], "expected min:max:num"),
    (["hessian", *SHIPPED, "--max-iter", "0"], "--max-iter 0: expected at least 1 Lanczos step"),
    (["hessian", *SHIPPED, "--eval-samples", "-3"], "--eval-samples -3: expected 1 to 4000"),
    (["surface", *SHIPPED, "--x", "-1:1:3", "--device", "nonsense"],
     "unknown device 'nonsense'; expected cpu, cuda or cuda:N"),
    # two kinds of baseline file at once: cmd_baselines ran only the first and ignored the other
    (["baselines", "--scale", "ci", "--eig-maps", "--seed-jitter", "--only", "no-such-net"],  # no run if let through
     "argument --seed-jitter: not allowed with argument --eig-maps"),
    (["baselines", "--scale", "ci", "--seed-jitter", "--spread", "--only", "no-such-net"],
     "--spread does not apply to --seed-jitter"),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(c[0][:1] + c[0][3 if c[0][0] == "baselines" else 5:]) for c in CASES])
def test_bad_input_is_one_clear_line(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)  # the CLI finds the shipped nets under ./baselines
    out = tmp_path / "out.h5"
    try:
        code = main([*argv, "-o", str(out)] if argv[0] == "surface" else argv)
    except SystemExit as exc:  # argparse's own errors exit 2 too
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert words in err[-1], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# Faults that involve files already on disk: each row prepares a folder, runs one command, and asserts
# the exit code, the one-line message, that the file that was there is byte-for-byte unchanged, and
# that nothing half-written (a .tmp) is left. The nets are a user's (a model file and a data file), so
# no row trains anything.

import hashlib  # noqa: E402
import textwrap  # noqa: E402

import torch  # noqa: E402

NET_PY = textwrap.dedent('''
    from torch import nn


    def make_net():
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
''')


def _own(folder: Path) -> list[str]:
    (folder / "net.py").write_text(NET_PY)
    g = torch.Generator().manual_seed(0)
    torch.save({"x": torch.randn(64, 8, generator=g), "y": torch.randint(0, 4, (64,), generator=g)}, folder / "d.pt")
    ns: dict = {}
    exec(NET_PY, ns)
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(ns["make_net"]().state_dict(), folder / f"w{seed}.pt")
    return ["surface", "--model", f"{folder}/net.py:make_net", "--data", str(folder / "d.pt"), "--x", "-1:1:5"]


def _swap(src: str, dst: str):
    def prepare(folder: Path, base: list[str], _mp) -> list[str]:
        import shutil

        shutil.copy(folder / src, folder / "w.pt")
        assert main([*base, "--weights", str(folder / "w.pt"), "-o", str(folder / "s.h5")]) == 0
        shutil.copy(folder / dst, folder / "w.pt")  # the same path now holds another net
        return [*base, "--weights", str(folder / "w.pt"), "-o", str(folder / "s.h5")]

    return prepare


def _other_data(folder: Path, base: list[str], _mp) -> list[str]:
    assert main([*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "s.h5")]) == 0
    d = torch.load(folder / "d.pt", weights_only=True)
    d["x"][0, 0] += 1.0  # one number of the evaluation data changed in place
    torch.save(d, folder / "d.pt")
    return [*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "s.h5")]


def _other_seed(folder: Path, base: list[str], _mp) -> list[str]:
    assert main([*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "s.h5")]) == 0
    return [*base, "--weights", str(folder / "w0.pt"), "--seed", "7", "-o", str(folder / "s.h5")]


def _under_a_file(folder: Path, base: list[str], _mp) -> list[str]:
    (folder / "plain").write_text("x")
    return [*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "plain" / "s.h5")]


def _huge_grid(folder: Path, base: list[str], monkeypatch) -> list[str]:
    import lossbench.surface as surface_mod

    monkeypatch.setattr(surface_mod, "available_memory", lambda: 2 * 2**30)  # a 2 GiB machine
    return [*base[:-2], "--x", "-1:1:5001", "--y", "-1:1:5001", "--weights", str(folder / "w0.pt"),
            "-o", str(folder / "s.h5")]


def _truncated_weights(folder: Path, base: list[str], _mp) -> list[str]:
    data = (folder / "w0.pt").read_bytes()
    (folder / "w0.pt").write_bytes(data[: len(data) // 2])
    return [*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "s.h5")]


def _checkpoint_lacking_weights(folder: Path, base: list[str], _mp) -> list[str]:
    """A file with lossbench's format key whose weights are not the net's."""
    from lossbench.config import RunConfig
    from lossbench.train import CHECKPOINT_FORMAT

    torch.save({"format": CHECKPOINT_FORMAT, "config": RunConfig(depth=8).to_dict(), "model": {"w": torch.zeros(1)},
                "epoch": 1}, folder / "bad.pt")
    return ["surface", "--checkpoint", str(folder / "bad.pt"), "--x", "-1:1:3", "-o", str(folder / "s.h5")]


def _locked_by_another_run(folder: Path, base: list[str], _mp) -> list[str]:
    from lossbench._io import output_lock

    lock = output_lock(folder / "s.h5", "another run's settings")
    lock.__enter__()  # the test releases it after main()
    HELD.append(lock)
    return [*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "s.h5")]


class _Payload:
    """Unpickling this would run a shell command creating ``pwned`` (a crafted CIFAR-10 batch)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _crafted_cifar(folder: Path, base: list[str], _mp) -> list[str]:
    import pickle

    batches = folder / "evil" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        with open(batches / name, "wb") as fh:
            pickle.dump({"data": _Payload(folder / "pwned"), "labels": [0]}, fh, protocol=2)
    return ["train", "--scale", "paper", "--data-dir", str(folder / "evil"), "--cache-dir", str(folder / "cache"),
            "--epochs", "1"]


def _plot_under_a_file(folder: Path, base: list[str], _mp) -> list[str]:
    assert main([*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "s.h5")]) == 0
    (folder / "plain").write_text("x")
    return ["plot", str(folder / "s.h5"), "-o", str(folder / "plain" / "fig")]


# --- issue 24: a user's own model, data and loss that gave a wrong answer without a word, or a traceback


def _data(folder: Path, x, y) -> str:
    torch.save({"x": x, "y": y}, folder / "bad.pt")
    return str(folder / "bad.pt")


def _user(folder: Path, base: list[str], *, data: str | None = None, extra: tuple[str, ...] = (),
          model: str | None = None) -> list[str]:
    argv = [*base, "--weights", str(folder / "w0.pt"), *extra, "-o", str(folder / "s.h5")]
    if data is not None:
        argv[argv.index("--data") + 1] = data
    if model is not None:
        argv[argv.index("--model") + 1] = model
        argv = [a for a in argv if a not in ("--weights", str(folder / "w0.pt"))]
    return argv


def _regression_with_cross_entropy(folder, base, _mp):
    g = torch.Generator().manual_seed(0)
    return _user(folder, base, data=_data(folder, torch.randn(64, 8, generator=g), torch.randn(64, 4, generator=g)))


def _mse_targets_shaped_unlike_outputs(folder, base, _mp):
    g = torch.Generator().manual_seed(0)
    return _user(folder, base, data=_data(folder, torch.randn(64, 8, generator=g), torch.randn(64, generator=g)),
                 extra=("--loss", "mse"))


def _summing_loss_function(folder, base, _mp):
    (folder / "losses.py").write_text("import torch.nn.functional as F\n\n\n"
                                      "def summed(out, y):\n    return F.cross_entropy(out, y, reduction='sum')\n")
    return _user(folder, base, extra=("--loss", f"{folder}/losses.py:summed"))


def _ignore_index_labels(folder, base, _mp):
    d = torch.load(folder / "d.pt", weights_only=True)
    d["y"][:5] = -100
    return _user(folder, base, data=_data(folder, d["x"], d["y"]))


def _nan_in_the_data(folder, base, _mp):
    d = torch.load(folder / "d.pt", weights_only=True)
    d["x"][3, 2] = float("nan")
    return _user(folder, base, data=_data(folder, d["x"], d["y"]))


def _inputs_of_the_wrong_shape(folder, base, _mp):
    g = torch.Generator().manual_seed(0)
    return _user(folder, base, data=_data(folder, torch.randn(64, 5, generator=g), torch.randint(0, 4, (64,))))


def _float64_inputs(folder, base, _mp):
    d = torch.load(folder / "d.pt", weights_only=True)
    return _user(folder, base, data=_data(folder, d["x"].double(), d["y"]))


def _two_d_labels(folder, base, _mp):
    d = torch.load(folder / "d.pt", weights_only=True)
    return _user(folder, base, data=_data(folder, d["x"], d["y"].view(-1, 1)))


def _labels_beyond_the_outputs(folder, base, _mp):
    d = torch.load(folder / "d.pt", weights_only=True)
    d["y"][0] = 7  # the net returns 4 values per sample
    return _user(folder, base, data=_data(folder, d["x"], d["y"]))


def _odd_model(body: str):
    def prepare(folder, base, _mp):
        (folder / "odd.py").write_text("import torch\nfrom torch import nn\n\n\n" + body)
        return _user(folder, base, model=f"{folder}/odd.py:make")
    return prepare


def _malicious_weights(folder, base, _mp):
    import pickle

    with open(folder / "evil.pt", "wb") as fh:
        pickle.dump(_Payload(folder / "pwned"), fh, protocol=2)
    return [*base, "--weights", str(folder / "evil.pt"), "-o", str(folder / "s.h5")]


def _damaged_surface(folder: Path, base: list[str], _mp) -> list[str]:
    """An HDF5 surface with 8 bytes overwritten in its middle, given to plot."""
    import h5py

    assert main([*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "s.h5")]) == 0
    with h5py.File(folder / "s.h5", "r") as f:
        mid = f["xdirection/0"].id.get_offset()  # inside a direction tensor: read back, it would be a wrong one
    data = bytearray((folder / "s.h5").read_bytes())
    data[mid:mid + 8] = b"\xff" * 8
    (folder / "s.h5").write_bytes(bytes(data))
    return ["plot", str(folder / "s.h5")]


def _damaged_surface_resumed(folder: Path, base: list[str], mp) -> list[str]:
    _damaged_surface(folder, base, mp)
    return [*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "s.h5")]


def _full_disk_mid_run(folder: Path, base: list[str], monkeypatch) -> list[str]:
    """The disk fills after the first write: every later write raises ENOSPC (what the OS says)."""
    import builtins
    import errno

    real_open, writes = builtins.open, [0]

    def open_(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".tmp"):
            writes[0] += 1
            if writes[0] > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    return [*base[:-2], "--x", "-1:1:9", "--y", "-1:1:9", "--weights", str(folder / "w0.pt"),
            "--checkpoint-seconds", "0.001", "-o", str(folder / "s.h5")]


def _inf_in_the_weights(folder, base, _mp):
    state = torch.load(folder / "w0.pt", weights_only=True)
    state["2.weight"][1, 3] = float("inf")
    torch.save(state, folder / "w0.pt")
    return _user(folder, base)


def _full_disk_while_plotting(folder: Path, base: list[str], monkeypatch) -> list[str]:
    """The disk is full when `--plot` writes its figures (the surface itself was written)."""
    import errno

    import matplotlib.figure

    def savefig(self, fname, *args, **kwargs):
        with open(fname, "wb") as fh:  # what a full disk does: a few bytes, then ENOSPC
            fh.write(b"\x89PNG")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return [*base, "--weights", str(folder / "w0.pt"), "-o", str(folder / "s.h5"), "--plot"]


HELD: list = []  # locks a row holds while main() runs

FILE_CASES = [
    # (name, prepare(folder, base, monkeypatch) -> argv, exit code, words of the one-line error)
    ("resume with other weights at the same path", _swap("w0.pt", "w1.pt"), 2, "the centre weights changed"),
    ("resume with other evaluation data", _other_data, 2, "the evaluation data changed"),
    ("resume with another direction seed", _other_seed, 2, "spec.seed (0 in the file, 7 now)"),
    ("output under a regular file", _under_a_file, 1, "cannot write"),
    ("grid bookkeeping beyond memory", _huge_grid, 2, "for its bookkeeping alone"),
    ("truncated weights file", _truncated_weights, 2, "not a readable weights file"),
    ("lossbench checkpoint lacking the net's weights", _checkpoint_lacking_weights, 2, "bad.pt"),
    ("output locked by a run with other settings", _locked_by_another_run, 1, "is being written by process"),
    ("a crafted CIFAR-10 batch under --data-dir", _crafted_cifar, 2, "refused to load the global"),
    ("plot into a folder that is a file", _plot_under_a_file, 1, "plain"),
    ("regression targets with the default cross-entropy", _regression_with_cross_entropy, 2, "use --loss mse"),
    ("targets (N,) against outputs (N, 4) with --loss mse", _mse_targets_shaped_unlike_outputs, 2,
     "reshape the targets"),
    ("a loss function that sums over the batch", _summing_loss_function, 2, "the loss sums over the batch"),
    ("labels equal to -100", _ignore_index_labels, 2, "labels go down to -100"),
    ("NaN in the data", _nan_in_the_data, 2, "hold NaN or inf"),
    ("inputs of the wrong shape", _inputs_of_the_wrong_shape, 2, "running the model on the first batch"),
    ("float64 inputs", _float64_inputs, 2, "torch.float64) failed"),
    ("2-D labels", _two_d_labels, 2, "class labels of shape (64, 1)"),
    ("labels beyond the model's outputs", _labels_beyond_the_outputs, 2, "labels go up to 7"),
    ("a model factory that raises", _odd_model("def make():\n    raise RuntimeError('no GPU here')\n"), 2,
     "raised RuntimeError: no GPU here"),
    ("a forward that returns a tuple", _odd_model(
        "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.l = nn.Linear(8, 4)\n\n"
        "    def forward(self, x):\n        return self.l(x), x\n\n\ndef make():\n    return M()\n"), 2,
     "the model returns a tuple"),
    ("a forward that returns a scalar", _odd_model(
        "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.l = nn.Linear(8, 4)\n\n"
        "    def forward(self, x):\n        return self.l(x).sum()\n\n\ndef make():\n    return M()\n"), 2,
     "expected one row per sample"),
    ("a malicious pickle as --weights", _malicious_weights, 2, "refused to load"),
    ("a damaged surface file given to plot", _damaged_surface, 2, "is damaged"),
    ("a damaged surface file resumed", _damaged_surface_resumed, 2, "is damaged"),
    ("a full disk in the middle of a run", _full_disk_mid_run, 1, "No space left on device"),
    ("inf in the weights", _inf_in_the_weights, 2, "w0.pt: tensor '2.weight' holds 1 inf/NaN of 64 values"),
    ("a full disk while --plot writes the figures", _full_disk_while_plotting, 1,
     "s-1d.png: No space left on device; free some space"),
]

#: rows whose run writes its output before failing (the surface is finished when the figures fail)
KEEPS_OUTPUT = {"a full disk while --plot writes the figures"}


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix != ".lock"}


@pytest.mark.parametrize("name, prepare, code, words", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_a_fault_with_files_on_disk_is_one_line_and_damages_nothing(name, prepare, code, words, tmp_path, capsys,
                                                                    monkeypatch):
    base = _own(tmp_path)
    argv = prepare(tmp_path, base, monkeypatch)
    capsys.readouterr()
    before = _digest(tmp_path)
    try:
        got = main(argv)
    finally:
        while HELD:
            HELD.pop().__exit__(None, None, None)
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code, err
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    after = _digest(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "a file that was there changed"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")], "a half-written file was left"
    created = sorted(set(after) - set(before))
    assert not [n for n in created if name not in KEEPS_OUTPUT and n.endswith((".h5", ".png", ".pdf"))], \
        f"a refused run left {created}"
    assert not [p for p in tmp_path.rglob("*.h5.lock")], "an output's lock was left"
    assert not (tmp_path / "pwned").exists(), "a file's payload ran"


def test_a_second_run_with_the_same_settings_waits_then_resumes(tmp_path):
    """The lock's other half: the same settings wait for the holder instead of failing."""
    import threading

    from lossbench._io import output_lock

    entered = threading.Event()
    release = threading.Event()

    def holder():
        with output_lock(tmp_path / "s.h5", "same"):
            entered.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert entered.wait(10)
    second = threading.Event()
    waiter = threading.Thread(target=lambda: (output_lock(tmp_path / "s.h5", "same").__enter__(), second.set()))
    waiter.start()
    assert not second.wait(0.5), "the second run went on while the first still held the output"
    release.set()
    assert second.wait(10), "the second run never got the output after the first let go"
    t.join()
    waiter.join()


def test_advice_for_a_damaged_cached_checkpoint_works_when_followed(tmp_path, capsys, monkeypatch):
    """The message says to delete the cache folder; doing exactly that retrains and succeeds."""
    import re
    import shutil

    import lossbench.cli_inputs as cli_inputs
    from lossbench.config import RunConfig
    from lossbench.train import train

    config = RunConfig(depth=8, batch_size=32, epochs=1, n_train=64, n_test=32, image_size=16)
    result = train(config, cache_dir=tmp_path / "cache")
    last = result.checkpoint(1)
    last.write_bytes(last.read_bytes()[:100])
    monkeypatch.setattr(cli_inputs, "config_from_args", lambda a: config)
    argv = ["surface", "--cache-dir", str(tmp_path / "cache"), "--x", "-1:1:3", "--eval-samples", "16",
            "-o", str(tmp_path / "s.h5")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    folder = re.search(r"delete the cache folder (\S+) \(rm -r\)", err)
    assert folder, err
    shutil.rmtree(folder.group(1))  # what the message says
    assert main(argv) == 0, capsys.readouterr().err
