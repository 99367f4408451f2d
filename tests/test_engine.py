import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lossbench.directions import create_random_direction
from lossbench.engine import conv_bn_pairs, make_measure, model_flops
from lossbench.evaluate import cross_entropy, make_batches
from lossbench.models import CifarResNet, resnet20, vgg9
from lossbench.surface import compute_grid

from .strategies import tiny_nets
from .tolerances import assert_close


def data(n=40, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return make_batches(torch.randn(n, 3, side, side, generator=g), torch.randint(0, 10, (n,), generator=g), 16)


def with_running_stats(model, side=8):
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 3, side, side, generator=torch.Generator().manual_seed(1)))
    return model.eval()


def grid(model, engine, batches, dir_type="weights", seed=0, **options):
    measure, keys = make_measure(engine, model, cross_entropy(), {"train": batches}, **options)
    delta = create_random_direction(model, seed=seed, dir_type=dir_type, ignore="none")
    eta = create_random_direction(model, seed=seed + 1, dir_type=dir_type, ignore="none")
    axis = np.linspace(-0.5, 0.5, 3)
    return compute_grid(model, measure, keys, delta=delta, eta=eta, alphas=axis, betas=axis, dir_type=dir_type)


@settings(max_examples=6)
@given(net=tiny_nets(), dir_type=st.sampled_from(["weights", "states"]), seed=st.integers(0, 100))
def test_fast_engine_matches_the_reference(net, dir_type, seed):
    """BN statistics and weights both move (ignore=none, states): the folding must follow them."""
    net = with_running_stats(net)
    batches = data(seed=seed)
    ref = grid(net, "reference", batches, dir_type, seed)
    fast = grid(net, "fast", batches, dir_type, seed)
    assert_close(fast.values["train_loss"], ref.values["train_loss"], scale=10)
    np.testing.assert_array_equal(fast.values["train_acc"], ref.values["train_acc"])


def test_pairs_are_every_conv_bn_of_a_resnet():
    pairs = conv_bn_pairs(resnet20())
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in resnet20().modules())
    assert len(pairs) == n_convs == 21  # 19 3x3 convs + 2 projections
    assert ("layer2.0.shortcut.0", "layer2.0.shortcut.1") in pairs
    assert len(conv_bn_pairs(CifarResNet(20, shortcut=False))) == 19


def test_vgg_linear_bn_is_left_alone_and_still_agrees():
    net = with_running_stats(vgg9(image_size=16), side=16)
    assert len(conv_bn_pairs(net)) == 7  # the Linear -> BatchNorm1d pair is not folded
    batches = data(side=16)
    ref = grid(net, "reference", batches)
    fast = grid(net, "fast", batches)
    assert_close(fast.values["train_loss"], ref.values["train_loss"], scale=10)


def test_unknown_engine_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown engine 'turbo'; expected one of reference, fast"):
        make_measure("turbo", resnet20(), cross_entropy(), {"train": data()})


def test_flop_count_of_resnet20():
    # He et al.: ResNet-20 is ~41 M multiply-adds on a 32x32 image (ours adds 1x1 projections)
    flops = model_flops(resnet20(), (3, 32, 32))
    assert 2 * 40e6 < flops < 2 * 43e6


def test_reduced_precision_and_graphs_are_refused_off_cuda(monkeypatch):
    """TF32 and graphs need CUDA; bf16 needs CUDA or a CPU with bf16 units (emulated bf16 is slower than
    float32): on a CPU without them, one line naming the missing units and the fix."""
    import lossbench.engine as engine

    net = with_running_stats(resnet20(), side=8)
    with pytest.raises(ValueError, match="precision 'tf32' is a CUDA opt-in"):
        make_measure("fast", net, cross_entropy(), {"train": data()}, precision="tf32")
    monkeypatch.setattr(engine, "cpu_bf16_units", lambda: None)
    with pytest.raises(ValueError, match=r"needs bf16 units \(AMX or AVX512-BF16.*--precision float32") as err:
        make_measure("fast", net, cross_entropy(), {"train": data()}, precision="bf16")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        make_measure("fast", net, cross_entropy(), {"train": data()}, precision="fp8")
    with pytest.raises(ValueError, match="cuda_graph=True needs a model on CUDA"):
        make_measure("fast", net, cross_entropy(), {"train": data()}, cuda_graph=True)


@pytest.mark.parametrize("options", [{"batch_size": 7}, {"batch_size": 40}, {}, {"compile": True}],
                         ids=["batch7", "batch40", "default", "compile"])
def test_fast_engine_options_do_not_change_the_numbers(options):
    """Batching and torch.compile may reorder the arithmetic, never change the function."""
    net = with_running_stats(CifarResNet(8, shortcut=True))
    batches = data()
    ref = grid(net, "reference", batches)
    fast = grid(net, "fast", batches, **options)
    assert_close(fast.values["train_loss"], ref.values["train_loss"], scale=10)
    np.testing.assert_array_equal(fast.values["train_acc"], ref.values["train_acc"])


def test_a_miscompiled_model_is_caught_at_the_first_point_and_the_grid_goes_on_eagerly(monkeypatch):
    """torch.compile's model is checked against the eager one at the first point: inductor's AVX2 kernels
    in torch 2.14 (ATEN_CPU_CAPABILITY=avx2) gave losses of 1e27 at some points and 0.3 % off at others."""
    import lossbench.engine as engine

    class Miscompiled(torch.nn.Module):  # what a wrong kernel looks like: plausible logits, other numbers
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            logits = self.model(x)
            return logits + 0.05 * torch.arange(logits.shape[1], dtype=logits.dtype)

    monkeypatch.setattr(engine.torch, "compile", lambda model, **kw: Miscompiled(model))
    net = with_running_stats(CifarResNet(8, shortcut=True))
    batches = data()
    ref = grid(net, "reference", batches)
    with pytest.warns(UserWarning, match=r"torch.compile's model disagrees with the eager one at the first grid "
                                         r"point \(train loss .* vs .*\): a miscompilation.*without compile"):
        fast = grid(net, "fast", batches, compile=True)
    assert_close(fast.values["train_loss"], ref.values["train_loss"], scale=10)


def test_the_compile_check_names_what_differs():
    one = [(torch.tensor(2.0, dtype=torch.float64), torch.tensor(3))]
    assert engine_compile_disagreement(one, one) == ""
    off = [(torch.tensor(2.001, dtype=torch.float64), torch.tensor(3))]
    assert engine_compile_disagreement(off, one) == "train loss 1.0005 vs 1, correct 3 vs 3"
    miss = [(torch.tensor(2.0, dtype=torch.float64), torch.tensor(4))]
    assert "correct 4 vs 3" in engine_compile_disagreement(miss, one)
    nan = [(torch.tensor(float("nan"), dtype=torch.float64), torch.tensor(3))]
    assert engine_compile_disagreement(nan, nan) == "" and engine_compile_disagreement(nan, one) != ""
    from lossbench.engine import COMPILE_CHECK_RTOL, PRECISIONS

    assert set(COMPILE_CHECK_RTOL) == set(PRECISIONS)  # every precision's compile is checked


def engine_compile_disagreement(compiled, eager):
    from lossbench.engine import COMPILE_CHECK_RTOL, compile_disagreement

    return compile_disagreement(compiled, eager, {"train": 2}, rtol=COMPILE_CHECK_RTOL["float32"])


@pytest.mark.gpu
@pytest.mark.parametrize("options", [{}, {"cuda_graph": True}, {"precision": "tf32"},
                                     {"precision": "bf16", "cuda_graph": True}],
                         ids=["float32", "float32-graph", "tf32", "bf16-graph"])
def test_fast_engine_on_cuda_matches_the_cpu_reference(options):
    """Every grid point of a CUDA run (a graph replays the weights the loop sets in place) against the
    CPU reference: float32 to float tolerance, TF32 / bf16 to their documented bounds (benchmarks/RESULTS.md)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: torch.cuda.is_available() is False")
    net = with_running_stats(CifarResNet(8, shortcut=True), side=16)
    batches = data(n=300, side=16)
    ref = grid(net, "reference", batches)
    fast = grid(net.cuda(), "fast", [(x.cuda(), y.cuda()) for x, y in batches], batch_size=128, **options)
    precision = options.get("precision", "float32")
    rel = np.abs(fast.values["train_loss"] - ref.values["train_loss"]) / ref.values["train_loss"]
    print(f"{options}: max relative loss difference vs CPU reference {rel.max():.2e}, "
          f"accuracy counts differ at {int((fast.values['train_acc'] != ref.values['train_acc']).sum())} of 9 points")
    bound = {"float32": 1e-5, "tf32": 5e-3, "bf16": 3e-2}[precision]
    assert rel.max() < bound
    if precision == "float32":
        n = sum(len(y) for _, y in batches)
        np.testing.assert_allclose(fast.values["train_acc"] * n, ref.values["train_acc"] * n, atol=1)


def test_cuda_math_switches_tf32_and_restores_it():
    """Only flags are touched, so this runs without a GPU. The reference is IEEE float32 on CUDA, and the
    flags stay readable through the legacy getters (inductor's max-autotune convolutions read them)."""
    from lossbench.evaluate import cuda_math

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark)
    with cuda_math("cuda", tf32=True, autotune=True):
        assert cudnn.allow_tf32 and matmul.allow_tf32 and cudnn.benchmark
    with cuda_math("cuda"):
        assert not cudnn.allow_tf32 and not matmul.allow_tf32
        if hasattr(getattr(cudnn, "conv", None), "fp32_precision"):
            assert cudnn.conv.fp32_precision != "tf32" and matmul.fp32_precision != "tf32"
    assert (cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark) == before
    with cuda_math("cpu", tf32=True):
        assert (cudnn.allow_tf32, matmul.allow_tf32) == before[:2]


def test_keep_freed_memory_applies_on_glibc():
    import platform

    from lossbench._malloc import keep_freed_memory

    applied = keep_freed_memory()
    if platform.libc_ver()[0] == "glibc":
        assert applied
    else:
        assert not applied


@pytest.mark.parametrize("env, expected", [("1", "True"), ("0", "False")])
def test_the_library_path_sets_the_allocator_itself(env, expected):
    """A plain compute_surface in a fresh process gets the allocator setting the CLI has (issue: the
    library path as fast as the CLI); importing lossbench alone does not touch it; the variable opts out."""
    import os
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc" and env == "1":
        pytest.skip("mallopt is glibc's; elsewhere nothing is applied")
    code = (
        "import numpy as np, torch\n"
        "from lossbench import _malloc\n"
        "from lossbench.surface import compute_surface\n"
        "from lossbench.directions import random_direction\n"
        "assert _malloc._applied is None\n"
        "m = torch.nn.Sequential(torch.nn.Linear(3, 2))\n"
        "x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))\n"
        "d = random_direction(dict(m.named_parameters()), seed=0)\n"
        "compute_surface(m, torch.nn.functional.cross_entropy, {'train': [(x, y)]}, delta=d,\n"
        "                alphas=np.linspace(-1, 1, 3), progress=False)\n"
        "print(_malloc._applied)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LOSSBENCH_KEEP_FREED_MEMORY": env})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == expected


def test_the_cpu_bf16_units_are_read_from_the_cpu_flags():
    from lossbench.engine import cpu_bf16_units

    sapphire = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n"
    cooper = "flags\t\t: fpu avx512f avx512_bf16\n"
    skylake = "flags\t\t: fpu avx512f avx512bw\nbugs\t\t: amx_bf16_lookalike\n"
    assert cpu_bf16_units(sapphire) == "amx_bf16"
    assert cpu_bf16_units(cooper) == "avx512_bf16"
    assert cpu_bf16_units(skylake) is None  # only the flags line counts
    assert cpu_bf16_units("") is None


def test_bf16_on_a_cpu_with_bf16_units_stays_near_float32():
    """bf16 autocast on the CPU: the loss within 2 % of float32 on a small BatchNorm ResNet (the
    benchmarks measure the error on trained nets), the accuracy within two of 40 images."""
    from lossbench.engine import cpu_bf16_units

    if cpu_bf16_units() is None:
        pytest.skip("this CPU has no bf16 units (no amx_bf16 or avx512_bf16 flag): bf16 is refused here")
    net = with_running_stats(resnet20(), side=8)
    batches = data()
    ref = grid(net, "reference", batches)
    bf16 = grid(net, "fast", batches, precision="bf16")
    np.testing.assert_allclose(bf16.values["train_loss"], ref.values["train_loss"], rtol=2e-2)
    assert np.max(np.abs(bf16.values["train_acc"] - ref.values["train_acc"])) * 40 <= 2
    assert np.max(np.abs(bf16.values["train_loss"] / ref.values["train_loss"] - 1)) > 1e-6  # really bf16


def test_packed_splits_give_each_splits_numbers_in_fewer_passes():
    """pack=True: many small splits share forward passes (a split may straddle two); every split's loss
    and accuracy equal the unpacked engine's and the reference's to float rounding."""
    net = with_running_stats(resnet20(), side=8)
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(70, 3, 8, 8, generator=g), torch.randint(0, 10, (70,), generator=g)
    cuts = [0, 3, 10, 11, 30, 45, 70]  # sizes 3, 7, 1, 19, 15, 25
    splits = {f"g{k}": make_batches(x[a:b], y[a:b], 4) for k, (a, b) in enumerate(zip(cuts, cuts[1:]))}
    ref, _ = make_measure("reference", net, cross_entropy(), splits)
    plain, _ = make_measure("fast", net, cross_entropy(), splits, batch_size=16)
    packed, keys = make_measure("fast", net, cross_entropy(), splits, batch_size=16, pack=True)
    r, p, q = ref(net), plain(net), packed(net)
    assert set(q) == set(keys) == set(r)
    for key in keys:
        assert q[key] == pytest.approx(r[key], rel=1e-5, abs=1e-6), key
        assert q[key] == pytest.approx(p[key], rel=1e-5, abs=1e-6), key
    from lossbench.engine import _packed

    passes = _packed(list(splits.values()), 16, channels_last=False)
    assert [len(b[1]) for b in passes] == [16, 16, 16, 16, 6]  # 5 passes, not one per split and batch
    assert sum(b - a for _, _, rows in passes for _, a, b in rows) == 70
    assert [[k for k, _, _ in rows] for _, _, rows in passes] == [[0, 1, 2, 3], [3, 4], [4, 5], [5], [5]]
