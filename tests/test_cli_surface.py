import h5py
import numpy as np
import pytest

import lossbench.engine as engine_module
from lossbench.__main__ import main
from lossbench.config import RunConfig
from lossbench.data import load_dataset
from lossbench.pipeline import SurfaceSpec, surface_file
from lossbench.store import load_surface
from lossbench.surface import Axis
from lossbench.train import train

TINY = RunConfig(depth=8, batch_size=32, epochs=2, n_train=128, n_test=64, image_size=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    a = train(TINY, cache_dir=cache)
    b = train(TINY.replace(batch_size=64), cache_dir=cache)
    return a, b


def test_surface_2d_with_plots(trained, tmp_path, capsys):
    out = tmp_path / "s.h5"
    rc = main(["surface", "--checkpoint", str(trained[0].checkpoint(2)), "--x", "-1:1:3", "--y", "-1:1:5",
               "--dataset", "train,test", "-o", str(out), "--plot"])
    text = capsys.readouterr().out
    assert rc == 0 and "grid 3x5" in text and "train_loss=" in text
    s = load_surface(out)
    assert s.complete and set(s.values) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    assert s.attrs["spec"]["norm"] == "filter" and s.attrs["config_id"] == "resnet8-bs32-s0"
    assert s.attrs["eval_samples"] == {"train": 128, "test": 64}
    with h5py.File(out, "r") as h:
        assert "xdirection" in h and "ydirection" in h
    for kind in ("contour", "contourf", "heat", "3d"):
        assert (tmp_path / f"s-train_loss-{kind}.png").exists() and (tmp_path / f"s-train_loss-{kind}.pdf").exists()


def test_same_command_again_is_a_no_op_and_other_settings_are_refused(trained, tmp_path, capsys):
    args = ["surface", "--checkpoint", str(trained[0].checkpoint(2)), "--x", "-1:1:3", "-o", str(tmp_path / "l.h5")]
    assert main(args) == 0
    assert main(args) == 0
    assert main(args[:-2] + ["--norm", "layer", "-o", str(tmp_path / "l.h5")]) == 2
    assert "another computation: spec.norm ('filter' in the file, 'layer' now)" in capsys.readouterr().err
    assert main(args[:-2] + ["--norm", "layer", "--overwrite", "-o", str(tmp_path / "l.h5")]) == 0


def test_interpolation_and_1d_plot(trained, tmp_path, capsys):
    out = tmp_path / "interp.h5"
    rc = main(["surface", "--checkpoint", str(trained[0].checkpoint(2)), "--target", str(trained[1].checkpoint(2)),
               "--x", "-0.5:1.5:5", "-o", str(out)])
    assert rc == 0
    s = load_surface(out)
    assert s.attrs["kind"] == "interpolation" and s.attrs["spec"]["dir_type"] == "states"
    # alpha = 0 is theta1 and alpha = 1 is theta2 (states, BN statistics included)
    assert s.values["train_loss"][1] == pytest.approx(trained[0].final["train_loss"], rel=1e-5)
    assert s.values["train_loss"][3] == pytest.approx(trained[1].final["train_loss"], rel=1e-5)
    assert main(["plot", str(out), "--loss-max", "5"]) == 0
    assert (tmp_path / "interp-1d.png").exists()


def test_plot_of_a_foreign_file_is_an_error(tmp_path, capsys):
    bad = tmp_path / "x.h5"
    with h5py.File(bad, "w") as h:
        h["a"] = 1
    assert main(["plot", str(bad)]) == 2
    assert "not a loss-surface file" in capsys.readouterr().err


def test_interrupted_surface_resumes_without_recomputing(trained, tmp_path, monkeypatch):
    model = trained[0].model
    data = load_dataset(TINY)
    spec = SurfaceSpec(x=Axis(-1, 1, 3), y=Axis(-1, 1, 3), eval_samples=64)
    path = tmp_path / "r.h5"
    real = engine_module.evaluate
    calls = {"n": 0}

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(engine_module, "evaluate", interrupting)
    with pytest.raises(KeyboardInterrupt):
        surface_file(path, model, data, spec)
    partial = load_surface(path)
    assert partial.done.sum() == 4
    calls["n"] = -100
    resumed = surface_file(path, model, data, spec)
    assert calls["n"] == -100 + 5  # only the 5 unfinished points
    monkeypatch.setattr(engine_module, "evaluate", real)
    fresh = surface_file(tmp_path / "fresh.h5", model, data, spec)
    np.testing.assert_array_equal(resumed.values["train_loss"], fresh.values["train_loss"])


def test_fast_engine_from_the_cli_gives_the_same_surface(trained, tmp_path, monkeypatch):
    ckpt = str(trained[0].checkpoint(2))
    common = ["surface", "--checkpoint", ckpt, "--x", "-1:1:3", "--y", "-1:1:3", "--eval-samples", "64"]
    assert main([*common, "-o", str(tmp_path / "ref.h5")]) == 0
    assert main([*common, "--engine", "fast", "-o", str(tmp_path / "fast.h5")]) == 0
    # --compile reaches the engine; compiling itself (~12 s here) is checked against the reference in
    # test_engine.py::test_fast_engine_options_do_not_change_the_numbers[compile]
    real, seen = engine_module.fast_measure, []

    def recording(*args, **options):
        seen.append(options)
        return real(*args, **{**options, "compile": False})

    monkeypatch.setattr(engine_module, "fast_measure", recording)
    assert main([*common, "--engine", "fast", "--compile", "--fast-batch", "17", "-o", str(tmp_path / "c.h5")]) == 0
    assert seen and all(o.get("compile") is True and o.get("batch_size") == 17 for o in seen), seen
    ref = load_surface(tmp_path / "ref.h5")
    for name in ("fast.h5", "c.h5"):
        fast = load_surface(tmp_path / name)
        np.testing.assert_allclose(fast.values["train_loss"], ref.values["train_loss"], rtol=1e-5)
        np.testing.assert_array_equal(fast.values["train_acc"], ref.values["train_acc"])


def test_a_file_is_resumed_only_in_its_own_precision(trained, tmp_path, capsys):
    """A bf16 file is not finished in float32 (or the reverse): the values would mix two arithmetics."""
    model, data = trained[0].model, load_dataset(TINY)
    spec = SurfaceSpec(x=Axis(-1, 1, 3), eval_samples=32)
    path = tmp_path / "p.h5"
    surface_file(path, model, data, spec, attrs={"precision": "bf16"})  # as a CUDA --precision bf16 run stores it
    with pytest.raises(ValueError, match=r"another computation: precision \('bf16' in the file, 'float32' now\)"):
        surface_file(path, model, data, spec)
    surface_file(path, model, data, spec, attrs={"precision": "bf16"})  # its own precision resumes
    rc = main(["surface", "--checkpoint", str(trained[0].checkpoint(2)), "--x", "-1:1:3", "--cuda-graph",
               "-o", str(tmp_path / "g.h5")])
    assert rc == 2 and "--cuda-graph apply to the fast engine only; add --engine fast" in capsys.readouterr().err


def test_a_file_is_resumed_only_with_its_own_loss(trained, tmp_path):
    """The library path records the loss itself (the CLI only spells it): a cross-entropy file is not
    finished with another loss."""
    from torch import nn

    model, data = trained[0].model, load_dataset(TINY)
    spec = SurfaceSpec(x=Axis(-1, 1, 3), eval_samples=32)
    path = tmp_path / "l.h5"
    surface_file(path, model, data, spec)
    with pytest.raises(ValueError, match=r"another computation: loss \('crossentropy' in the file, 'NLLLoss' now\)"):
        surface_file(path, model, data, spec, loss_fn=nn.NLLLoss())
    assert surface_file(path, model, data, spec, loss_fn=nn.CrossEntropyLoss()).done.all()  # its own loss resumes


@pytest.mark.parametrize("where", ["under a file", "read-only folder"])
def test_an_unwritable_output_fails_before_any_point(trained, tmp_path, capsys, where):
    import os

    if where == "under a file":
        (tmp_path / "plain").write_text("x")
        out = tmp_path / "plain" / "s.h5"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders; the file-parent case covers the check")
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        out = ro / "s.h5"
    ckpt = str(trained[0].checkpoint(2))
    rc = main(["surface", "--checkpoint", ckpt, "--x", "-1:1:3", "--eval-samples", "64", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"error: cannot write {out}:"), err
    assert not out.exists()


def test_a_finished_run_removes_temporaries_a_killed_write_left(trained, tmp_path):
    import os
    import time

    out = tmp_path / "s.h5"
    stale = tmp_path / ".s.h5.abc123.tmp"
    stale.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    unrelated = tmp_path / ".other.h5.abc.tmp"
    unrelated.write_bytes(b"")
    os.utime(unrelated, (time.time() - 60, time.time() - 60))
    ckpt = str(trained[0].checkpoint(2))
    assert main(["surface", "--checkpoint", ckpt, "--x", "-1:1:3", "--eval-samples", "64", "-o", str(out)]) == 0
    assert not stale.exists() and unrelated.exists()


def test_config_options_that_contradict_the_checkpoint_are_refused(trained, tmp_path, capsys):
    """--checkpoint of one net with --arch/--no-shortcut/--batch-size of another silently computed the
    checkpoint's net; now it is an error naming both, and options that agree are fine."""
    ckpt = str(trained[0].checkpoint(2))  # resnet8, shortcut, batch 32
    out = tmp_path / "s.h5"
    base = ["surface", "--checkpoint", ckpt, "--x", "-1:1:3", "--eval-samples", "64", "-o", str(out)]
    assert main([*base, "--arch", "resnet56", "--no-shortcut", "--batch-size", "2000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds resnet8-bs32-s0, which --arch resnet56, --no-shortcut, --batch-size 2000" in err[0]
    assert not out.exists()
    assert main([*base, "--arch", "resnet8", "--batch-size", "32"]) == 0 and out.exists()


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_float64_recomputes_the_float32_surface(trained, tmp_path, capsys, engine):
    """--dtype float64 (issue 23): the model and the data in double precision, the same directions (drawn
    in float32, normalised in float64: equal to float32 rounding), the values within float32 rounding of
    the float32 run; the file says float64, and a float32 run does not resume it."""
    ckpt = str(trained[0].checkpoint(2))
    args = ["surface", "--checkpoint", ckpt, "--x", "-1:1:3", "--y", "-1:1:3", "--engine", engine]
    assert main([*args, "-o", str(tmp_path / "f32.h5")]) == 0
    assert main([*args, "--dtype", "float64", "-o", str(tmp_path / "f64.h5")]) == 0
    a, b = load_surface(tmp_path / "f32.h5"), load_surface(tmp_path / "f64.h5")
    assert b.attrs["dtype"] == "float64" and "dtype" not in a.attrs
    for k in ("xdirection", "ydirection"):
        with h5py.File(tmp_path / "f32.h5", "r") as fa, h5py.File(tmp_path / "f64.h5", "r") as fb:
            assert all(np.allclose(fa[k][n][()], fb[k][n][()], rtol=1e-6, atol=0) for n in fa[k])
    diff = np.abs(a.values["train_loss"] - b.values["train_loss"]) / np.abs(b.values["train_loss"])
    print(f"{engine}: float32 vs float64 train loss, largest relative difference {diff.max():.2e}")
    assert 0 < diff.max() < 1e-4
    assert main([*args, "-o", str(tmp_path / "f64.h5")]) == 2
    assert "dtype ('float64' in the file, 'float32' now)" in capsys.readouterr().err
