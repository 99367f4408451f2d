"""Evaluation engines for grid points: ``reference`` and ``fast``.

Both are a ``measure(model) -> {"<split>_loss": ..., "<split>_acc": ...}`` for
:func:`lossbench.surface.compute_grid`, called after the grid point's weights have been set.

* ``reference``: :func:`lossbench.evaluate.evaluate` on the model as it is: the ground truth.
* ``fast``: the same numbers from a shadow copy of the model in which every eval-mode BatchNorm that
  directly follows a convolution is folded into it (valid because the running statistics are fixed
  during evaluation: ``W' = W * g / sqrt(v + eps)``, ``b' = b_bn - m * g / sqrt(v + eps)``), in
  channels-last layout (NCHW for IEEE float32 on CUDA, where cuDNN is faster so), under
  ``torch.inference_mode``, in cache-sized batches on the CPU and large ones on a GPU.
  The folded weights are recomputed from the live model at every point, so any direction (weights or
  states, BN included) is honoured. Options: ``torch.compile``; on CUDA, one CUDA graph per point; the
  precision opt-ins TF32 (CUDA) and bf16 autocast (CUDA, or a CPU with AMX or AVX512-BF16 units),
  whose error against float32 the benchmarks measure.

Agreement with ``reference``: relative loss difference at most ~1e-5 in float32 and identical
accuracy counts (tests/test_engine.py, benchmarks/test_grid_speed.py).
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import Tensor, nn

from .evaluate import Batch, LossFn, cuda_math, evaluate

ENGINES = ("reference", "fast")

#: ``measure(model) -> {key: value}``: what to record at each grid point (the model is already moved there).
Measure = Callable[[nn.Module], Mapping[str, float]]


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) module names where a Conv2d's output feeds only a BatchNorm2d (foldable in eval mode)."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # not traceable (data-dependent control flow): nothing is folded, still correct
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0]
        if (isinstance(src, torch.fx.Node) and src.op == "call_module"
                and isinstance(modules.get(src.target), nn.Conv2d) and len(src.users) == 1):
            pairs.append((src.target, node.target))
    return pairs


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


class FoldedShadow:
    """A BN-folded, channels-last copy of ``model`` whose weights follow the live model on :meth:`sync`."""

    def __init__(self, model: nn.Module, *, channels_last: bool = True) -> None:
        self.src = model
        self.pairs = conv_bn_pairs(model)
        shadow = copy.deepcopy(model).eval()
        for conv_name, bn_name in self.pairs:
            conv: nn.Conv2d = shadow.get_submodule(conv_name)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                               conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
            folded.to(device=conv.weight.device, dtype=conv.weight.dtype)
            _set_submodule(shadow, conv_name, folded)
            _set_submodule(shadow, bn_name, nn.Identity())
        for p in shadow.parameters():
            p.requires_grad_(False)
        self.channels_last = channels_last
        self.model = shadow.to(memory_format=torch.channels_last) if channels_last else shadow
        folded_names = {f"{c}.{k}" for c, _ in self.pairs for k in ("weight", "bias")}
        folded_names |= {f"{b}.{k}" for _, b in self.pairs for k in ("weight", "bias", "running_mean", "running_var",
                                                                     "num_batches_tracked")}
        src_state = dict(model.state_dict(keep_vars=True))
        dst_state = dict(self.model.state_dict(keep_vars=True))
        names = [n for n in src_state if n not in folded_names and n in dst_state and src_state[n].is_floating_point()]
        self._src_plain = [src_state[n] for n in names]
        self._dst_plain = [dst_state[n] for n in names]
        self._folds = [(model.get_submodule(c), model.get_submodule(b), self.model.get_submodule(c))
                       for c, b in self.pairs]

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the live model's current weights into the shadow, folding each BN into its conv."""
        if self._src_plain:
            torch._foreach_copy_(self._dst_plain, self._src_plain)
        for conv, bn, folded in self._folds:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
            folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            folded.bias.copy_(bias)


def loss_measure(loss_fn: LossFn, datasets: Mapping[str, Sequence[Batch]]) -> tuple[Measure, list[str]]:
    """The reference engine, the paper's measure: mean loss and accuracy on each split, with
    :func:`evaluate` on the model as it is; returns (measure, its keys)."""
    keys = [f"{split}_{kind}" for split in datasets for kind in ("loss", "acc")]

    def measure(model: nn.Module) -> dict[str, float]:
        out = {}
        for split, batches in datasets.items():
            result = evaluate(model, loss_fn, batches)
            out[f"{split}_loss"], out[f"{split}_acc"] = result.loss, result.acc
        return out

    return measure, keys


PRECISIONS = ("float32", "tf32", "bf16")

#: Images per forward pass of the fast engine when none is given. On the CPU, 256 images were 1.3-1.45x
#: faster than 1 024 under glibc's default allocator thresholds and as fast with them raised
#: (:mod:`lossbench._malloc`); on a GPU, large batches fill the chip.
DEFAULT_BATCH = {"cpu": 256, "cuda": 4096}


def fast_measure(model: nn.Module, loss_fn: LossFn, datasets: Mapping[str, Sequence[Batch]], *,
                 channels_last: bool | None = None, batch_size: int | None = None, precision: str = "float32",
                 compile: bool | str = False, cuda_graph: bool = False, pack: bool = False):
    """The fast engine for ``model`` (see the module docstring); returns (measure, keys).

    Args:
        datasets: split -> batches; they are re-batched once into ``batch_size`` images (default
            :data:`DEFAULT_BATCH` of the device).
        channels_last: NHWC layout for the data and weights; default: on, except for float32 on CUDA,
            where cuDNN's IEEE float32 kernels ran faster in NCHW (benchmarks/RESULTS.md).
        precision: ``float32`` (default, matches the reference), or the opt-ins ``tf32`` (CUDA: TF32
            tensor-core convolutions and matmuls) and ``bf16`` (bf16 autocast, on CUDA or on a CPU with
            bf16 units, :func:`cpu_bf16_units`); their error against float32 is measured by the
            benchmarks (benchmarks/RESULTS.md), not bounded here.
        compile: wrap the shadow model in ``torch.compile`` (first point pays the compilation); a string
            is the inductor mode, e.g. ``"max-autotune-no-cudagraphs"``. The first point is also computed
            eagerly; where the two differ (:func:`compile_disagreement`, :data:`COMPILE_CHECK_RTOL`) the
            grid warns and goes on without compile (with ``cuda_graph``: raises).
        cuda_graph: capture the whole point (BN folding, every forward, loss and accuracy sums) as one
            CUDA graph on the first call and replay it afterwards; the data and weights stay at fixed
            addresses, so a replay reads the point's weights set in place by the grid loop.
        pack: put every split's images into shared batches of ``batch_size`` and take each split's loss
            and accuracy on its rows of the logits: many small splits (the adaptive grid's 16 groups of
            a few images) cost one forward pass instead of one each. Exact in eval mode, where an image's
            logits do not depend on the others in its batch; the sums change by float rounding only.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    device = next(model.parameters()).device
    check_precision(precision, device)
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a model on CUDA; it is on {device} (drop --cuda-graph)")
    if channels_last is None:
        channels_last = not (device.type == "cuda" and precision == "float32")
    shadow = FoldedShadow(model, channels_last=channels_last)
    if compile:  # True, or an inductor mode such as "max-autotune-no-cudagraphs"
        net = torch.compile(shadow.model, **({} if compile is True else {"mode": compile}))
    else:
        net = shadow.model
    size = batch_size or DEFAULT_BATCH.get(device.type, 1024)
    counts = {split: sum(len(y) for _, y in batches) for split, batches in datasets.items()}
    keys = [f"{split}_{kind}" for split in datasets for kind in ("loss", "acc")]
    # (x, y, [(split index, first row, end row), ...]) per forward pass, the data copied once either way
    passes = (_packed(list(datasets.values()), size, channels_last) if pack else
              [(x, y, [(k, 0, len(y))]) for k, batches in enumerate(datasets.values())
               for x, y in _rebatch(batches, size, channels_last)])

    def forward_sums(module: nn.Module) -> list[tuple[Tensor, Tensor]]:
        """(summed loss float64, correct count int64) per split, left on the device (no host sync)."""
        shadow.sync()
        totals = [torch.zeros((), dtype=torch.float64, device=device) for _ in counts]
        corrects = [torch.zeros((), dtype=torch.int64, device=device) for _ in counts]
        with _precision(device, precision), torch.inference_mode():
            for x, y, rows in passes:
                logits = module(x)
                if logits.dtype in (torch.bfloat16, torch.float16):  # bf16 autocast: the loss in float32
                    logits = logits.float()
                for k, a, b in rows:
                    totals[k] += loss_fn(logits[a:b], y[a:b]).double() * (b - a)
                    corrects[k] += (logits[a:b].argmax(1) == y[a:b]).sum()
        return list(zip(totals, corrects))

    current = net  # the compiled model, or the eager shadow once compile is found to change the numbers
    run = _graphed(lambda: forward_sums(current), device) if cuda_graph else lambda: forward_sums(current)
    unchecked = bool(compile)

    def measure(_: nn.Module) -> dict[str, float]:
        nonlocal current, unchecked
        out = {}
        sums = run()
        if unchecked:
            # torch.compile must not change the function, and a miscompiled kernel gives plausible-looking
            # numbers (inductor's AVX2 C++ kernels in torch 2.14: losses of 1e27 at some points and 0.3 % off
            # at others), so its first point is checked against the eager shadow (one more forward pass).
            unchecked = False
            eager = forward_sums(shadow.model)
            problem = compile_disagreement(sums, eager, counts, rtol=COMPILE_CHECK_RTOL[precision])
            if problem:
                message = (f"torch.compile's model disagrees with the eager one at the first grid point ({problem}): "
                           f"a miscompilation (torch {torch.__version__}, inductor's vector ISA "
                           f"{_inductor_isa()})")
                if cuda_graph:
                    raise RuntimeError(f"{message}; run without compile (CLI: drop --compile)")
                warnings.warn(f"{message}; the grid goes on without compile (CLI: drop --compile)", stacklevel=2)
                current, sums = shadow.model, eager
        for split, (total, correct) in zip(counts, sums):
            out[f"{split}_loss"] = float(total) / counts[split]
            out[f"{split}_acc"] = int(correct) / counts[split]
        return out

    return measure, keys


#: How far the compiled model's mean loss may be from the eager one's at the first point, relative, per
#: precision (float32: the engines agree to ~1e-5; TF32 and bf16 kernels of one precision differ more
#: between a compiled and an eager model); the accuracy counts must be equal.
COMPILE_CHECK_RTOL = {"float32": 1e-4, "tf32": 1e-2, "bf16": 1e-2}


def compile_disagreement(compiled: Sequence[tuple[Tensor, Tensor]], eager: Sequence[tuple[Tensor, Tensor]],
                         counts: Mapping[str, int], *, rtol: float) -> str:
    """'' where the compiled model's (summed loss, correct count) per split match the eager model's
    (loss within ``rtol`` relative, counts equal), else what differs, for the message."""
    problems = []
    for split, (loss_c, correct_c), (loss_e, correct_e) in zip(counts, compiled, eager):
        lc, le = float(loss_c) / counts[split], float(loss_e) / counts[split]
        same = lc == le or abs(lc - le) <= rtol * abs(le) or (math.isnan(lc) and math.isnan(le))
        if not same or int(correct_c) != int(correct_e):
            problems.append(f"{split} loss {lc:.6g} vs {le:.6g}, correct {int(correct_c)} vs {int(correct_e)}")
    return "; ".join(problems)


def _inductor_isa() -> str:
    try:
        from torch._inductor import cpu_vec_isa

        return str(cpu_vec_isa.pick_vec_isa()) or "none"
    except Exception:  # a private module: its name is only for the message
        return "unknown"


#: CPU features that make bf16 autocast faster than float32: Intel AMX (``amx_bf16``, Sapphire Rapids
#: and later) or AVX512-BF16 (Cooper Lake, Zen 4). Without either, oneDNN emulates bf16 in float32
#: arithmetic and bf16 is slower than float32.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_units(cpuinfo: str | None = None) -> str | None:
    """The first of :data:`CPU_BF16_FLAGS` the CPU reports (``/proc/cpuinfo``'s flags, or the text
    given), or None: also where the flags cannot be read (not Linux)."""
    import re

    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as fh:
                cpuinfo = fh.read()
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        if re.match(r"^flags\s*:", line):
            flags.update(line.split(":", 1)[1].split())
    return next((f for f in CPU_BF16_FLAGS if f in flags), None)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse, in one line naming the fix, a precision the device cannot run faster than float32."""
    if precision == "tf32" and device.type != "cuda":
        raise ValueError(f"precision 'tf32' is a CUDA opt-in; the model is on {device}. Use precision='float32' "
                         "(CLI: --precision float32), bf16 on a CPU with bf16 units, or --device cuda")
    if precision == "bf16" and device.type == "cpu" and cpu_bf16_units() is None:
        raise ValueError("precision 'bf16' on the CPU needs bf16 units (AMX or AVX512-BF16: amx_bf16 or avx512_bf16 "
                         "among the CPU's flags), which this CPU lacks; emulated bf16 is slower than float32: use "
                         "precision='float32' (CLI: --precision float32)")
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"precision 'bf16' runs on CUDA or a CPU with bf16 units; the model is on {device}")


@contextlib.contextmanager
def _precision(device: torch.device, precision: str):
    """The point's arithmetic: float32 or TF32 with cuDNN autotuning on CUDA (fixed shapes: it pays),
    and bf16 autocast for ``bf16`` (on CUDA, or on a CPU with bf16 units)."""
    with cuda_math(device, tf32=precision == "tf32", autotune=True):
        if precision == "bf16":
            # no weight-cast cache: the weights change at every point, and a cache breaks graph capture
            with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False):
                yield
        else:
            yield


def _graphed(fn: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    """``fn`` captured as a CUDA graph on first call (after warm-up runs on a side stream, which also
    pick cuDNN algorithms and compile), replayed afterwards; returns fn's static output tensors."""
    state: dict[str, Any] = {}

    def run():
        if "graph" not in state:
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(3):
                    fn()
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                state["out"] = fn()
            state["graph"] = graph
        state["graph"].replay()
        return state["out"]

    return run


def _packed(splits: Sequence[Sequence[Batch]], size: int, channels_last: bool
            ) -> list[tuple[Tensor, Tensor, list[tuple[int, int, int]]]]:
    """Every split's images, in split order, cut into passes of ``size``; each pass lists the rows of
    each split it holds as (split index, first row, end row)."""
    x = torch.cat([b[0] for batches in splits for b in batches])
    y = torch.cat([b[1] for batches in splits for b in batches])
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    ends = np.cumsum([sum(len(b[1]) for b in batches) for batches in splits])
    starts = np.concatenate([[0], ends[:-1]])
    out = []
    for i in range(0, len(x), size):
        j = min(i + size, len(x))
        rows = [(k, int(max(s, i) - i), int(min(e, j) - i)) for k, (s, e) in enumerate(zip(starts, ends))
                if s < j and e > i]
        out.append((x[i:j], y[i:j], rows))
    return out


def _rebatch(batches: Sequence[Batch], size: int, channels_last: bool) -> list[Batch]:
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def make_measure(engine: str, model: nn.Module, loss_fn: LossFn, datasets: Mapping[str, Sequence[Batch]],
                 **options: Any):
    """(measure, keys) of the named engine; unknown names list the valid ones."""
    if engine == "reference":
        if options:
            raise ValueError(f"the reference engine takes no options; got {sorted(options)}")
        return loss_measure(loss_fn, datasets)
    elif engine == "fast":
        return fast_measure(model, loss_fn, datasets, **options)
    else:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def model_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds x 2 of one forward pass of one input of ``input_shape`` (C, H, W), counted once per
    conv and linear layer with forward hooks (BN, ReLU, pooling are ignored: < 1 % for ResNets)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += 2 * k * out.numel()

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += 2 * m.in_features * out.numel()

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            p = next(model.parameters())
            model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
            model.train(was)
    finally:
        for h in handles:
            h.remove()
    return total
