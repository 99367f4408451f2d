"""Mutation tests of the regression check: each mutant of the method, applied with monkeypatch, must
make the baseline comparison at the recompute tolerance fail (DESIGN.md, "Checks that can fail").

The mutants run on the ci ResNet-20 at batch 128 (the ci net that reached a minimum). Each compares
its metrics against the unmutated metrics of the same weights, computed in this session, at the
tolerances stored in ``baselines/ci/resnet20-bs128-s0.json``: so the test says whether the stored
``tol`` catches the mutant on any platform, whatever the retrained weights there.

The swap tests compare stored baselines with each other: the values of one config must fail every
other config's baseline, and the two eigen-ratio maps must fail each other's.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

import lossbench.directions as directions_mod
import lossbench.engine as engine_mod
import lossbench.hessian as hessian_mod
import lossbench.pipeline as pipeline_mod
from lossbench.baselines import compare, load_baseline
from lossbench.config import find_config
from lossbench.data import load_dataset
from lossbench.evaluate import Evaluation
from lossbench.reference_nets import state_sha256
from lossbench.reproduce import compute_config_surface, config_metrics, scale_curvature
from lossbench.train import train

BASELINES = Path(__file__).parent.parent / "baselines"
SUBJECT = "resnet20-bs128-s0"


@pytest.fixture(scope="module")
def subject(lossbench_cache_dir, lossbench_scale, lossbench_device, lossbench_net, tmp_path_factory):
    """(trained result, data, stored baseline, results folder) of the ci ResNet-20 at batch 128."""
    config = find_config("ci", depth=20, shortcut=True, batch_size=128)
    assert config.config_id == SUBJECT
    if lossbench_scale.name == "ci" and lossbench_device.type == "cpu":
        # the session's net fixture trains it together with the rest of the matrix the session checks,
        # one process per core, instead of alone on one core while the other waits
        result = lossbench_net(config)
    else:
        result = train(config, cache_dir=lossbench_cache_dir)
    data = load_dataset(config)
    return result, data, load_baseline(BASELINES / "ci" / f"{SUBJECT}.json"), tmp_path_factory.mktemp("mutants")


def _metrics(subject, parts=("surface", "curvature")) -> dict[str, float]:
    """The suite's metrics of the subject: the surface's and/or the curvature at the minimum (each
    mutant recomputes only the part it breaks, to keep the suite fast)."""
    result, data, _, folder = subject
    model = copy.deepcopy(result.model)  # a train-mode mutant moves BN statistics: never touch the cached net
    scale = _ci_scale()
    out: dict[str, float] = {}
    if "surface" in parts:
        out.update(config_metrics(compute_config_surface(folder / "surface.h5", model, data, result.config, scale)))
    if "curvature" in parts:
        out.update(scale_curvature(model, data, scale)[0])
    return out


def _ci_scale():
    """The ci scale on the reference engine: the evaluation mutants replace ``engine.evaluate``, which
    only the reference engine calls (the suite's fast engine is checked against it in test_engine)."""
    import dataclasses

    from lossbench.config import get_scale

    return dataclasses.replace(get_scale("ci"), engine="reference")


@pytest.fixture(scope="module")
def clean_metrics(subject) -> dict[str, float]:
    return _metrics(subject)


def _session_baseline(subject, clean: dict[str, float]) -> dict:
    """The stored tolerances around this session's unmutated values (same weights, same platform)."""
    stored = subject[2]
    metrics = {k: {"value": clean[k], "tol": v["tol"]} for k, v in stored["metrics"].items() if k in clean}
    return {"metrics": metrics}


def _failing(subject, clean, mutated) -> list[str]:
    baseline = _session_baseline(subject, clean)
    baseline["metrics"] = {k: v for k, v in baseline["metrics"].items() if k in mutated}
    rows = compare(mutated, baseline)
    return [r.line() for r in rows if not r.ok]


def test_unmutated_metrics_pass_the_stored_baseline(subject, clean_metrics):
    """The control: the unmutated metrics the mutants are compared with pass the stored baseline
    itself (its values, its tol) where the retrained weights are the baseline's. So the mutants' bar
    is the suite's own check, not a recomputation compared with itself (identical bits, which could
    not fail)."""
    result, _, stored, _ = subject
    sha = state_sha256(result.model.state_dict())
    if sha != stored["source"]["weights_sha256"]:
        pytest.skip(f"the retrained {SUBJECT} differs from the baseline's weights ({sha[:12]} vs "
                    f"{stored['source']['weights_sha256'][:12]}: another platform or torch), so its stored "
                    "values do not apply here; the mutants still use the stored tol around this session's values")
    baseline = {"metrics": {k: v for k, v in stored["metrics"].items() if k in clean_metrics}}
    failing = [r.line() for r in compare(clean_metrics, baseline) if not r.ok]
    assert not failing, "\n".join(failing)


def _layer_instead_of_filter(original):
    def normalize_tensor(d, t, norm):
        return original(d, t, "layer" if norm == "filter" else norm)

    return normalize_tensor


def _scaled_directions(original):
    def make_directions(model, spec, **kw):
        delta, eta = original(model, spec, **kw)
        scale = lambda d: None if d is None else {k: v * 1.01 for k, v in d.items()}  # noqa: E731
        return scale(delta), scale(eta)

    return make_directions


def _train_mode_evaluate(model, loss_fn, batches):
    model.train()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in batches:
            out = model(x)
            total += float(loss_fn(out, y)) * len(y)
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
    model.eval()
    return Evaluation(loss=total / n, acc=correct / n, n=n)


@torch.no_grad()
def _mean_of_batch_means(model, loss_fn, batches):
    model.eval()
    losses, accs = [], []
    for x, y in batches:
        out = model(x)
        losses.append(float(loss_fn(out, y)))
        accs.append(float((out.argmax(1) == y).float().mean()))
    n = sum(len(y) for _, y in batches)
    return Evaluation(loss=sum(losses) / len(losses), acc=sum(accs) / len(accs), n=n)


def _hvp_of_the_sum(model, loss_fn, batches, v, *, ignore="biasbn", graphs=None):
    # rebuilds every graph (``graphs``, the kept ones, only saves time)
    params = hessian_mod.hessian_params(model, ignore)
    names = list(params)
    tensors = [params[n] for n in names]
    vs = [v[n].to(params[n]) for n in names]
    out = [torch.zeros_like(p) for p in tensors]
    model.eval()
    for x, y in batches:
        loss = loss_fn(model(x), y)  # each batch's mean, summed: not weighted by its size / N
        grads = torch.autograd.grad(loss, tensors, create_graph=True)
        hv = torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, vs)), tensors)
        for acc, h in zip(out, hv):
            acc.add_(h.detach())
    return dict(zip(names, out))


MUTANTS = {  # name: (module, attribute, make(original) -> mutant, the part of the metrics it breaks)
    "layer-normalisation": (directions_mod, "normalize_tensor", _layer_instead_of_filter, "surface"),
    "perturbation-x1.01": (pipeline_mod, "make_directions", _scaled_directions, "surface"),
    "train-mode-evaluation": (engine_mod, "evaluate", lambda original: _train_mode_evaluate, "surface"),
    "mean-of-batch-means": (engine_mod, "evaluate", lambda original: _mean_of_batch_means, "surface"),
    # ``_hvp``, not the public ``hvp``: Lanczos and Hutchinson call the unchecked one at every step
    "hessian-of-the-sum": (hessian_mod, "_hvp", lambda original: _hvp_of_the_sum, "curvature"),
}


def _counted(fn, calls: list[int]):
    def wrapper(*args, **kwargs):
        calls[0] += 1
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_mutant_fails_the_baseline_check(mutant, subject, clean_metrics, monkeypatch):
    module, name, make, part = MUTANTS[mutant]
    calls = [0]
    monkeypatch.setattr(module, name, _counted(make(getattr(module, name)), calls))
    mutated = _metrics(subject, parts=(part,))
    # a mutant the metric path never calls would "survive" for the wrong reason (CI caught one after
    # Lanczos moved from ``hvp`` to ``_hvp``): say so instead
    assert calls[0] > 0, f"mutant {mutant} never ran: {module.__name__}.{name} is not on the metric path any more"
    failing = _failing(subject, clean_metrics, mutated)
    assert failing, f"mutant {mutant} survived: every metric stayed within its stored tol"


def test_the_batch_mutants_are_exercised():
    """The ci surface evaluates 128 images in batches of 100 and the Hessian 64 in batches of 40:
    unequal last batches, so a mean of batch means differs from the sum / N rule, and there is more
    than one Hessian batch to sum instead of average (else those mutants could not be caught)."""
    scale = _ci_scale()
    assert scale.eval_samples > scale.eval_batch and scale.eval_samples % scale.eval_batch != 0
    assert scale.hessian_samples > scale.hessian_batch and scale.hessian_samples % scale.hessian_batch != 0


def _ci_baselines() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((BASELINES / "ci").glob("*.json"))
            if not p.name.endswith(".obtained.json")}


def _differs(a: dict, b: dict) -> bool:
    rows = compare({k: v["value"] for k, v in a["metrics"].items()}, b)
    return any(not r.ok for r in rows)


@pytest.mark.parametrize("pair", list(itertools.permutations(sorted(_ci_baselines()), 2)),
                         ids=lambda p: f"{p[0]}-vs-{p[1]}")
def test_swapped_baselines_fail(pair):
    """Every pair of ci configs differs in shortcut, depth or batch size: the values of one must fail
    the other's baseline at tol (the old seed-spread bands accepted ResNet-56 as ResNet-56-noshort)."""
    docs = _ci_baselines()
    assert _differs(docs[pair[0]], docs[pair[1]])


def test_swapped_eigen_ratio_maps_fail():
    a, b = (json.loads((BASELINES / "ci" / "eigmap" / f"{n}.json").read_text())
            for n in ("resnet56-bs128-s0", "resnet56-noshort-bs128-s0"))
    assert _differs(a, b) and _differs(b, a)


def test_stored_tolerances_are_at_most_one_percent():
    """Issue "Baselines that catch a regression": every tol <= 1 % of its value where the value is not
    near zero, and <= 1e-3 absolute where it is, in the ci and the small baselines; the exceptions are
    listed with their measured jitter."""
    exceptions = []
    paths = [p for scale in ("ci", "small") for p in sorted((BASELINES / scale).rglob("*.json"))
             if not p.name.endswith(".obtained.json") and p.name != "claims.json"
             and not {"nets", "gpu-nets", "seed-nets"} & set(p.relative_to(BASELINES).parts)]  # provenance
    assert len(paths) >= 8 + 2 + 12 + 2, "the ci and small baselines are not all there"
    for path in paths:
        doc = json.loads(path.read_text())
        for name, entry in doc["metrics"].items():
            value, tol = entry["value"], entry["tol"]
            limit = 0.01 * abs(value) if abs(value) > 0.1 else 1e-3
            if math.isfinite(value) and tol > limit:
                jitter = doc.get("jitter", {}).get(name)
                exceptions.append((f"{path.relative_to(BASELINES)} {name}", f"tol {tol:.3g} vs value {value:.4g} "
                                   f"(measured jitter {jitter})"))
    found = dict(exceptions)
    assert set(found) == set(ALLOWED_WIDE_TOLERANCES), (
        "new (explain in docs/baselines.md and list here): "
        + "; ".join(f"{k}: {v}" for k, v in found.items() if k not in ALLOWED_WIDE_TOLERANCES)
        + " | listed but no longer wide (drop): " + "; ".join(sorted(set(ALLOWED_WIDE_TOLERANCES) - set(found))))
    doc_text = (BASELINES.parent / "docs" / "baselines.md").read_text()
    for key in ALLOWED_WIDE_TOLERANCES:
        where, name = key.split(" ")
        assert Path(where).stem in doc_text and f"`{name}`" in doc_text, f"{key} is not explained in docs/baselines.md"


#: Metrics whose measured recompute jitter exceeds the 1 % goal, each explained in docs/baselines.md
#: ("Tolerances above 1 %"); a new one fails this test until it is explained there, and one listed
#: here that is no longer wide fails it too (the list stays the truth).
ALLOWED_WIDE_TOLERANCES = {
    # λ_max at the map's corner (alpha=+1, beta=-1) moves 0.28 % when the directions move by 9e-8 of
    # their norm (drawn in float64): the Hessian there is not smooth in the point (tol 2.8 %).
    "small/eigmap/resnet56-noshort-bs128-s0.json max_eig@4,0",
}


def _interpolation_without_bn_statistics(original):
    """The BatchNorm running statistics left at the first net's values (only the weights move)."""
    def target_direction(theta1, theta2):
        d = original(theta1, theta2)
        return {k: torch.zeros_like(v) if "running_" in k else v for k, v in d.items()}

    return target_direction


@pytest.fixture(scope="module")
def interpolation_subject():
    """The small scale's filter-normalisation pair at weight decay 0 (shipped nets) and the stored
    baseline of their interpolation: the main job's result the mutant must break."""
    from lossbench.config import get_scale
    from lossbench.reference_nets import load_reference, shipped_ids

    scale = get_scale("small")
    small, large = sorted((c for c in scale.normalization_configs if c.weight_decay == 0), key=lambda c: c.batch_size)
    path = BASELINES / "small" / "interpolation" / "sgd-wd0.json"
    if not path.exists() or not {small.config_id, large.config_id} <= set(shipped_ids(BASELINES, "small")):
        pytest.skip("the small scale's SGD pair and its interpolation baseline are not shipped yet")
    nets = [load_reference(c.config_id, BASELINES, "small") for c in (small, large)]
    return scale, nets, load_dataset(small), load_baseline(path)


@pytest.mark.parametrize("mutant", [False, True], ids=["control", "bn-statistics-not-interpolated"])
def test_interpolation_without_batchnorm_statistics_fails(mutant, interpolation_subject, monkeypatch, tmp_path):
    """Issue 23: an interpolation that leaves the BatchNorm statistics at the first net's values used to
    pass the main job (its values had no baseline). Now the control passes the stored baseline and the
    mutant fails it."""
    from lossbench.reproduce import interpolation_metrics

    scale, (a, b), data, stored = interpolation_subject
    if mutant:
        monkeypatch.setattr(pipeline_mod, "target_direction", _interpolation_without_bn_statistics(
            pipeline_mod.target_direction))
    obtained = interpolation_metrics(tmp_path / "i.h5", a.model, b.model, data, scale)
    failing = [r.line() for r in compare(obtained, stored) if not r.ok]
    if mutant:
        assert failing, "the interpolation without BatchNorm statistics passed its baseline"
        print("\n".join(failing[:5]))
    else:
        assert not failing, "\n".join(failing)


def test_lanczos_stopped_after_4_steps_leaves_the_curvature_unresolved(subject, monkeypatch):
    """Mutant (issue 21): the suite's Lanczos stopped after 4 steps (what the former rule did). Its
    lambda_min is then NaN, not a number of either sign, so eig_ratio_center is NaN and every claim
    that uses it comes out unresolved (tests/test_claims.py::test_an_unresolved_eigenvalue_makes_its_
    claims_unresolved); the unmutated suite resolves it on the same net."""
    import lossbench.reproduce as reproduce_mod

    result, data, _, _ = subject
    scale = _ci_scale()
    clean, details = reproduce_mod.scale_curvature(copy.deepcopy(result.model), data, scale)
    assert math.isfinite(clean["eig_ratio_center"]) and details["lanczos_converged"]
    monkeypatch.setitem(reproduce_mod.CURVATURE, "max_iter", 4)
    cut, details = reproduce_mod.scale_curvature(copy.deepcopy(result.model), data, scale)
    assert math.isnan(cut["eig_min"]) and math.isnan(cut["eig_ratio_center"])
    assert "after 4 steps" in details["unresolved_min"]
