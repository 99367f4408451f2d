"""Baselines: stored metric values with the numbers that say how well each is known, compared the way
pytest-regressions does it.

Three questions, three numbers (DESIGN.md, "Checks that can fail"):

* ``tol``, the *recompute tolerance*: did the code change? :data:`SAFETY_FACTOR` x the largest
  deviation of the same metric on the same weights across what may legitimately vary between two
  correct runs (``jitter``: a float64 recompute of model and data, 2 threads, the other engine, other
  evaluation and Hessian batch sizes, a repeated run), with a small per-kind floor
  (:data:`TOL_FLOORS`). The float64 recompute measures the metric's conditioning: how far float32
  rounding alone moves it, which is what another CPU or a GPU in float32 changes too.
* ``sampling``: how well is the number known from its images? The sd of a Hessian quantity over
  disjoint image subsets (the main job uses the first).
* ``spread``: is a finding robust? Each metric's value for every training seed (``spread.seeds``; seed 0
  is the one the suite recomputes), with sd, n, min, max, and each seed's final accuracy, convergence
  and weights' sha256. The claims use it (:func:`uncertainty_context`).

Layout: ``baselines/<scale>/<config_id>.json``, sorted keys, indent 2, final newline::

    {"format": "lossbench-baseline/3", "config_id": ..., "scale": ..., "config_hash": ...,
     "source": {"commit", "torch", "device", "platform", "weights_sha256", "date"},
     "metrics": {"curv_max": {"value": 1.2345, "tol": 1.2e-05}, ...},
     "jitter": {"curv_max": 1.1e-06, ...},
     "sampling": {"eig_max": {"sd": ..., "subsets": 3, "images": 128}, ...},
     "spread": {"seeds": [0, 1, 2], "metrics": {"curv_max": {"values": [...], "sd", "n", "min", "max"}},
                "finals": [...], "converged": [...], "weights_sha256": [...],
                "jitter": {"eig_max": [per seed], ...}, "jitter_variants": [...]},  # shipped scale
     "final": {...}, "converged": ..., "tolerance_method": "..."}

The check compares at ``tol`` ("tier: tol"). A net retrained from scratch whose weights are not
bit-identical to the baseline's (``weights_sha256`` differs: another CPU model, math-library code path
or torch version; training is not bit-reproducible across CPUs even where their platform ids agree) is
compared at the spread band instead ("tier: spread"): the range over the training seeds and the nets
trained on other code paths (``spread.band``, else the seeds' ``spread.metrics``) widened by
:data:`SPREAD_FACTOR` standard deviations on each side, since its metrics are then as different as
another training seed's would be. A changed recipe fails by its ``config_hash`` whatever the weights. Every metric is compared before anything fails; the message lists
expected +- band, obtained and the relative difference of each, and ``<config_id>.obtained.json`` is
written beside the baseline. A missing baseline is created and fails ("review and commit"); ``regen``
rewrites a differing file (tolerances and spread kept) and still fails; ``regen_all`` rewrites and
passes. A file whose ``config_hash`` differs from the config's fails: the recipe changed; one whose
``config_id`` is another net's fails saying so.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import statistics
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import write_text_atomic

BASELINE_FORMAT = "lossbench-baseline/3"

#: tol = SAFETY_FACTOR x the largest measured recompute deviation (or the floor, if larger).
SAFETY_FACTOR = 10.0

#: Floors of ``tol`` per metric kind: (relative to |value|, absolute in the metric's unit). Used where
#: the measured jitter is zero or tiny; far below the 1 % a real change of the method moves a metric.
TOL_FLOORS: dict[str, tuple[float, float]] = {
    "loss": (1e-6, 1e-8),  # loss_center (nats)
    "acc": (0.0, 1e-9),  # acc_center: a count ratio; any flipped image is a change
    "curv": (1e-5, 1e-10),  # curvature fits, Hessian eigenvalues (lambda_min may be ~1e-8) and trace
    "sharpness": (1e-5, 1e-8),
    "basin": (1e-5, 1e-8),
    "fraction": (0.0, 1e-9),  # count ratios
    "count": (0.0, 0.0),  # local_minima
    "roughness": (1e-6, 1e-9),
    "pca": (1e-6, 1e-9),
    "eig": (1e-5, 1e-8),  # eigen-ratio summaries
    "other": (1e-6, 1e-9),
}

#: Spread tier: the band is [min - k sd, max + k sd] of the seed-to-seed values (and at least tol).
SPREAD_FACTOR = 3.0

TIER_TOL = "tol"
TIER_SPREAD = "spread"
SPREAD_REASON = ("trained weights differ from the baseline's: training is not bit-reproducible across CPUs (another "
                 "CPU model, math-library code path or torch version trains other weights from the same recipe), so "
                 "each metric is compared at the band of the training seeds and code paths")
SAME_PLATFORM_NOTE = ("this machine's platform id is the baseline's; CPUs that share it still take different "
                      "math-library code paths")


def metric_kind(name: str) -> str:
    """The tolerance class of a metric name (a direction-pair suffix ``/pK`` and a 1D line's
    ``line_<norm>_`` prefix do not change it)."""
    name = name.split("/")[0].split("@")[0]
    if name.startswith("line_"):
        name = name.split("_", 2)[-1]
    if name.startswith("loss") or name.endswith("_loss"):
        return "loss"
    if name.startswith("acc") or name.endswith("_acc"):
        return "acc"
    if name.startswith("eig_converged") or name.endswith("fraction"):
        return "fraction"
    if name.startswith("eig_ratio"):
        return "eig"
    if name in ("eig_max", "eig_min", "max_eig", "min_eig") or name.startswith(("curv", "trace", "spec_top")):
        return "curv"
    if name.startswith("sharpness"):
        return "sharpness"
    if name.startswith("basin"):
        return "basin"
    if name.startswith("pca"):
        return "pca"
    if name == "local_minima" or name.endswith("_points"):
        return "count"
    if name == "roughness":
        return "roughness"
    return "other"


def floor_tolerance(name: str, value: float) -> float:
    """The smallest ``tol`` a metric gets (see :data:`TOL_FLOORS`)."""
    rel, abs_ = TOL_FLOORS[metric_kind(name)]
    return abs_ + rel * (abs(value) if math.isfinite(value) else 0.0)


def recompute_tolerances(values: Mapping[str, float], jitter: Mapping[str, float], *,
                         factor: float = SAFETY_FACTOR) -> dict[str, float]:
    """``tol`` per metric: ``max(factor * jitter, floor)``.

    Args:
        values: the metric values the baseline stores.
        jitter: the largest |deviation| of each metric over the recompute variants (NaN-safe: a metric
            that is NaN in every variant has jitter 0; one that is NaN in some has jitter inf).
    """
    out = {}
    for name, value in values.items():
        j = float(jitter.get(name, 0.0))
        out[name] = max(factor * j, floor_tolerance(name, value))
    return out


def spread_stats(samples: Mapping[str, Sequence[float]], *, keep_values: bool = False) -> dict[str, dict[str, Any]]:
    """Seed-to-seed statistics per metric: sample sd, n, min, max over the finite values (and, with
    ``keep_values``, the values themselves in seed order, NaN kept: the claims average them)."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        finite = [float(v) for v in values if math.isfinite(v)]
        sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
        out[name] = {"sd": round_sig(sd, 4), "n": len(finite),
                     "min": round_sig(min(finite)) if finite else math.nan,
                     "max": round_sig(max(finite)) if finite else math.nan}
        if keep_values:
            out[name]["values"] = [round_sig(float(v), VALUE_DIGITS) for v in values]
    return out


def spread_metrics(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A baseline's per-metric spread entries (``spread.metrics``)."""
    return dict((doc.get("spread") or {}).get("metrics", {}))


def band_metrics(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Per metric the statistics (sd, min, max) of the spread tier's band: over the training seeds and,
    where measured (a retrained scale), the nets trained on other code paths (``spread.band``)."""
    spread = doc.get("spread") or {}
    return dict(spread.get("band") or spread.get("metrics", {}))


def uncertainty_context(doc: Mapping[str, Any], *, session_seed: int = 0) -> dict[str, Any]:
    """What the claims need from a baseline besides the session's own numbers: the other training
    seeds' values, finals and convergence (``seeds``), and each metric's sampling error and numerical
    deviation (``uncertainty``). See :mod:`lossbench.claims`."""
    spread = doc.get("spread") or {}
    seeds = list(spread.get("seeds", []))
    others = [i for i, s in enumerate(seeds) if s != session_seed]
    metrics = {name: [entry["values"][i] for i in others] for name, entry in spread_metrics(doc).items()
               if "values" in entry and len(entry["values"]) == len(seeds)}
    finals = spread.get("finals", [])
    converged = spread.get("converged", [])
    unc: dict[str, dict[str, float]] = {}
    for name, j in (doc.get("jitter") or {}).items():
        unc.setdefault(name, {})["numeric"] = float(j) if math.isfinite(float(j)) else 0.0
    for name, entry in (doc.get("sampling") or {}).items():
        unc.setdefault(name, {})["sampling"] = float(entry["sd"])
    return {"seeds": {"seeds": [seeds[i] for i in others], "metrics": metrics,
                      "finals": [finals[i] for i in others] if len(finals) == len(seeds) else [],
                      "converged": [bool(converged[i]) for i in others] if len(converged) == len(seeds) else []},
            "uncertainty": unc}


def further_seeds(doc: Mapping[str, Any] | None, default: tuple[int, ...] = (1, 2)) -> tuple[int, ...]:
    """The training seeds besides seed 0 whose values a baseline's spread stores, in its order (a
    config may have more than ``default``: one trained further where a seed did not reach a minimum);
    ``default`` where it stores none."""
    stored = [int(s) for s in ((doc or {}).get("spread") or {}).get("seeds", []) if s != 0]
    return tuple(stored) or default


def seed_baseline(doc: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The baseline of training seed ``seed`` held in seed 0's file: for every metric whose values at
    each seed are stored (``spread.metrics.<name>.values``), the value at ``seed`` with seed 0's
    ``tol`` scaled by |value / seed 0's value| where that is above 1 (a tolerance is an absolute
    deviation measured on seed 0's net; a larger number deviates proportionally more), at least
    :data:`SAFETY_FACTOR` times the seed's own recompute jitter where the spread stores it
    (``spread.jitter.<name>``, one entry per seed: the Hessian numbers, whose sensitivity to a code path
    is the net's own, not seed 0's scaled; :func:`lossbench.regenerate.write_seed_jitter`), and never
    below the kind's floor; and the hash of the weights they were measured on (``weights_sha256``, None
    when the file does not record it). A baseline document :func:`compare` takes."""
    spread = doc.get("spread") or {}
    seeds = list(spread.get("seeds", []))
    own_jitter = spread.get("jitter") or {}
    if seed not in seeds:
        raise KeyError(f"{doc.get('config_id')}: no values at training seed {seed} are stored (spread seeds "
                       f"{seeds}); write them with `python -m lossbench baselines --spread --seeds 0 1 2`")
    i = seeds.index(seed)
    metrics = {}
    for name, entry in spread_metrics(doc).items():
        base = (doc.get("metrics") or {}).get(name)
        values = entry.get("values")
        if base is None or values is None or len(values) != len(seeds):
            continue
        value, value0, tol0 = float(values[i]), float(base["value"]), float(base["tol"])
        grow = abs(value / value0) if math.isfinite(value) and math.isfinite(value0) and value0 != 0 else 1.0
        per_seed = own_jitter.get(name) or []
        own = float(per_seed[i]) if len(per_seed) == len(seeds) and per_seed[i] is not None else 0.0
        # an infinite jitter (an end resolved on some code paths only) would pass any value: not a tolerance
        own = own if math.isfinite(own) else 0.0
        metrics[name] = {"value": value,
                         "tol": max(tol0 * max(1.0, grow), SAFETY_FACTOR * own, floor_tolerance(name, value))}
    shas = spread.get("weights_sha256") or []
    return {"config_id": doc.get("config_id"), "seed": seed, "metrics": metrics,
            "weights_sha256": shas[i] if len(shas) == len(seeds) else None}


def round_sig(x: float, digits: int = 6) -> float:
    """``x`` rounded to ``digits`` significant digits (baselines are reviewed in diffs)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def _round_up_sig(x: float, digits: int = 3) -> float:
    """``x`` rounded *up* to ``digits`` significant digits, so a stored tolerance is never tighter than
    the measured one."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    r = round_sig(x, digits)
    if r < x:
        exponent = math.floor(math.log10(abs(x))) - digits + 1
        r = round_sig(r + 10.0**exponent, digits)
    return r


def provenance(device: str = "cpu", *, weights_sha256: str | None = None) -> dict[str, Any]:
    """Where a baseline value came from: commit, torch version, device, platform, weights, date."""
    import torch

    from .train import platform_id

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    if device.startswith("cuda") and torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    out: dict[str, Any] = {"commit": commit, "torch": str(torch.__version__), "device": device,
                           "platform": platform_id(), "date": _dt.date.today().isoformat()}
    if weights_sha256 is not None:
        out["weights_sha256"] = weights_sha256
    return out


@dataclass(frozen=True)
class Row:
    """One metric's comparison."""

    name: str
    expected: float | None
    tol: float
    obtained: float | None
    ok: bool
    lo: float | None = None  # the accepted interval (tier spread is not symmetric about the value)
    hi: float | None = None

    @property
    def rel_diff(self) -> float:
        if self.expected is None or self.obtained is None:
            return math.nan
        return abs(self.obtained - self.expected) / max(abs(self.expected), 1e-12)

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        if self.expected is None:
            exp = "missing"
        elif self.lo is not None and self.hi is not None:
            exp = f"{self.expected:.6g} in [{self.lo:.4g}, {self.hi:.4g}]"
        else:
            exp = f"{self.expected:.6g} ± {self.tol:.3g}"
        got = "missing" if self.obtained is None else f"{self.obtained:.6g}"
        return f"  {mark} {self.name:<22} expected {exp:<30} obtained {got:<12} rel diff {self.rel_diff:.2e}"


class BaselineMismatch(AssertionError):
    """Raised when a check fails; its message is the whole comparison table."""


class BaselineFileError(ValueError):
    """A baseline file that is not valid: names the file and the field."""


def validate(doc: Any, path: str | Path) -> None:
    """Raise :class:`BaselineFileError` naming file and field when ``doc`` is not a v2 baseline."""
    where = str(path)
    if not isinstance(doc, dict):
        raise BaselineFileError(f"{where}: expected a JSON object at the top level, got {type(doc).__name__}")
    if doc.get("format") != BASELINE_FORMAT:
        raise BaselineFileError(
            f"{where}: format {doc.get('format')!r}, expected {BASELINE_FORMAT!r}; regenerate it "
            "(python -m lossbench baselines --scale <scale>, then --spread)"
        )
    metrics = doc.get("metrics")
    if not isinstance(metrics, dict):
        raise BaselineFileError(f"{where}: field 'metrics' must be an object of metric -> {{value, tol}}")
    for name, entry in metrics.items():
        if not isinstance(entry, dict):
            raise BaselineFileError(f"{where}: metrics.{name} must be an object with 'value' and 'tol'")
        for key in ("value", "tol"):
            v = entry.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise BaselineFileError(f"{where}: metrics.{name}.{key} must be a number, got {v!r}")
        if not entry["tol"] >= 0:
            raise BaselineFileError(f"{where}: metrics.{name}.tol must be >= 0, got {entry['tol']!r}")
    spread = doc.get("spread", {})
    if not isinstance(spread, dict) or not isinstance(spread.get("metrics", {}), dict):
        raise BaselineFileError(f"{where}: field 'spread' must be an object with 'seeds' and 'metrics' "
                                "(metric -> {values, sd, n, min, max})")
    for name, entry in spread.get("metrics", {}).items():
        if not isinstance(entry, dict) or any(
                isinstance(entry.get(k), bool) or not isinstance(entry.get(k), (int, float)) for k in ("sd", "min", "max")):
            raise BaselineFileError(f"{where}: spread.metrics.{name} must hold numbers sd, min and max")


def _band(entry: Mapping[str, Any], spread: Mapping[str, Any] | None, tier: str) -> tuple[float, float]:
    value, tol = float(entry["value"]), float(entry["tol"])
    lo, hi = value - tol, value + tol
    if tier == TIER_SPREAD and spread and math.isfinite(float(spread["sd"])):
        k = SPREAD_FACTOR * float(spread["sd"])
        lo = min(lo, float(spread["min"]) - k)
        hi = max(hi, float(spread["max"]) + k)
    return lo, hi


def compare(obtained: Mapping[str, float], baseline: Mapping[str, Any], *, tier: str = TIER_TOL,
            not_recomputed: Iterable[str] = ()) -> list[Row]:
    """Compare every metric (union of both sides) and return one :class:`Row` each, sorted by name;
    ``not_recomputed``: stored metrics the caller deliberately did not compute (e.g. the eigen-ratio map
    points the main job takes from the baseline), left out instead of failing as missing."""
    stored = baseline.get("metrics", {})
    spread = band_metrics(baseline)
    skip = set(not_recomputed) - set(obtained)
    rows = []
    for name in sorted((set(stored) | set(obtained)) - skip):
        entry = stored.get(name)
        got = obtained.get(name)
        if entry is None or got is None:
            rows.append(Row(name, None if entry is None else float(entry["value"]), 0.0,
                            None if got is None else float(got), False))
            continue
        value = float(entry["value"])
        lo, hi = _band(entry, spread.get(name), tier)
        got = float(got)
        if math.isnan(value) or math.isnan(got):  # NaN: "no answer" (e.g. an unconverged solve) on both sides
            ok = math.isnan(value) and math.isnan(got)
        else:
            ok = lo - 1e-15 <= got <= hi + 1e-15
        if tier == TIER_SPREAD:
            rows.append(Row(name, value, float(entry["tol"]), got, ok, lo, hi))
        else:
            rows.append(Row(name, value, float(entry["tol"]), got, ok))
    return rows


@dataclass(frozen=True)
class Outcome:
    status: str  # passed | failed | created | updated
    path: Path
    rows: tuple[Row, ...] = ()
    message: str = ""
    tier: str = TIER_TOL


def write_baseline(path: Path, data: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


#: Significant digits of a stored value: its rounding error (5e-12 relative) must stay far below the
#: recompute tolerance (1e-6 relative and up), or rounding alone would fail the check.
VALUE_DIGITS = 12


def make_baseline(config_id: str, scale: str, metrics: Mapping[str, float], *, source: Mapping[str, Any],
                  tolerances: Mapping[str, float] | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A baseline document with values to :data:`VALUE_DIGITS` digits and a ``tol`` per metric (the
    floor where not given), rounded up to 3 digits."""
    entries = {}
    for name, value in metrics.items():
        value = float(value)
        tol = float(tolerances[name]) if tolerances and name in tolerances else floor_tolerance(name, value)
        entries[name] = {"value": round_sig(value, VALUE_DIGITS), "tol": _round_up_sig(tol)}
    doc = {"format": BASELINE_FORMAT, "config_id": config_id, "scale": scale, "metrics": entries,
           "source": dict(source)}
    doc.update(extra or {})
    return doc


def load_baseline(path: str | Path) -> dict[str, Any]:
    """A validated baseline document; :class:`BaselineFileError` names file and field otherwise."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BaselineFileError(f"baseline {path} is not valid JSON ({exc}); fix or delete it") from exc
    validate(doc, path)
    return doc


def check(path: str | Path, obtained: Mapping[str, float], *, config_id: str, scale: str,
          source: Mapping[str, Any], config_hash: str | None = None, weights_sha256: str | None = None,
          platform: Mapping[str, str] | None = None, regen: bool = False, regen_all: bool = False,
          extra: Mapping[str, Any] | None = None, tolerances: Mapping[str, float] | None = None,
          not_recomputed: Iterable[str] = ()) -> Outcome:
    """Check ``obtained`` against the baseline file at ``path`` (see the module docstring).

    Args:
        config_hash: the recipe's hash; a baseline made for another recipe fails (unless regenerating).
        weights_sha256: the hash of the evaluated weights (retrained nets): when it differs from the
            baseline's, the comparison is at the spread band (tier ``spread``: training seeds and nets
            trained on other code paths), and the message says why. Two CPUs with the same
            ``platform`` still train different weights (MKL's branch follows the CPU model), so other
            weights never mean "the training changed"; a changed recipe fails by ``config_hash``.
        platform: this machine's platform id (:func:`lossbench.train.platform_id`): only for the message.
        tolerances: each metric's ``tol`` where the file is written (created, or rewritten by ``regen``);
            default the kind's floor (creation) or the stored ones (regeneration).
        not_recomputed: stored metrics deliberately not computed this time (:func:`compare`); a check
            that compares nothing fails, and a regeneration keeps them.

    Returns an :class:`Outcome`; the caller decides how to fail (the pytest plugin raises
    :class:`BaselineMismatch` for ``failed``, ``created`` and ``updated`` unless ``regen_all``).
    A malformed file raises :class:`BaselineFileError`.
    """
    path = Path(path)
    obtained_path = path.with_name(f"{path.stem}.obtained.json")
    full_source = {**source, **({"weights_sha256": weights_sha256} if weights_sha256 else {})}
    base_extra = {**({"config_hash": config_hash} if config_hash else {}), **(extra or {})}
    if not path.exists():
        write_baseline(path, make_baseline(config_id, scale, obtained, source=full_source, extra=base_extra,
                                           tolerances=tolerances))
        return Outcome("created", path, message=f"created baseline {path}; review and commit it")
    baseline = load_baseline(path)
    if baseline.get("config_id") not in (None, config_id):
        return Outcome("failed", path, message=(
            f"baseline file of {baseline['config_id']} used for {config_id}: {path} holds another net's metrics "
            f"(a file copied over another?); restore it with `git checkout -- {path}`"))
    stale_recipe = config_hash is not None and baseline.get("config_hash") not in (None, config_hash)
    stored_sha = baseline.get("source", {}).get("weights_sha256") or baseline.get("weights_sha256")
    stored_sha = stored_sha if isinstance(stored_sha, str) else None  # an interpolation's pair names two nets
    other_weights = bool(weights_sha256 and stored_sha and stored_sha != weights_sha256)
    same_platform = platform is not None and baseline.get("source", {}).get("platform") == dict(platform)
    tier = TIER_SPREAD if other_weights else TIER_TOL
    rows = tuple(compare(obtained, baseline, tier=tier, not_recomputed=not_recomputed))
    if not rows:
        return Outcome("failed", path, rows, f"nothing was compared with {path}: every stored metric was left out "
                                             "as not recomputed", tier)
    if not stale_recipe and all(r.ok for r in rows):
        obtained_path.unlink(missing_ok=True)
        note = "" if tier == TIER_TOL else f"tier: spread — {SPREAD_REASON}"
        return Outcome("passed", path, rows, note, tier)
    table = "\n".join(r.line() for r in rows)
    n_bad = sum(not r.ok for r in rows)
    if regen or regen_all:
        kept = baseline.get("metrics", {})
        tolerances = tolerances or {k: v["tol"] for k, v in kept.items() if k in obtained}
        left = {k: kept[k] for k in set(not_recomputed) - set(obtained) if k in kept}  # kept as stored
        keep = {k: v for k, v in baseline.items() if k not in ("format", "config_id", "scale", "metrics", "source")}
        new = make_baseline(config_id, scale, obtained, source=full_source, tolerances=tolerances,
                            extra={**keep, **base_extra})
        new["metrics"].update(left)
        write_baseline(path, new)
        obtained_path.unlink(missing_ok=True)
        status = "passed" if regen_all else "updated"
        return Outcome(status, path, rows, f"rewrote {path} ({n_bad} metric(s) differed):\n{table}", TIER_TOL)
    write_baseline(obtained_path, make_baseline(config_id, scale, obtained, source=full_source, extra=base_extra))
    if stale_recipe:
        return Outcome("failed", path, rows,
                       f"the recipe of {config_id} changed since its baseline {path} (config_hash "
                       f"{str(baseline.get('config_hash'))[:12]} stored, {config_hash[:12]} now): regenerate it "
                       f"(pytest --lossbench-regen-all, then python -m lossbench baselines --scale {scale})", tier)
    header = f"{n_bad} of {len(rows)} metrics differ from {path} (obtained values in {obtained_path.name})"
    if tier == TIER_SPREAD:
        header += f"\ntier: spread — {SPREAD_REASON} (stored {stored_sha[:12]}, obtained {weights_sha256[:12]}"
        header += f"; {SAME_PLATFORM_NOTE})" if same_platform else ")"
        if not band_metrics(baseline):
            header += ("\nthe file holds no spread, so the band is its tol: write it with `python -m lossbench "
                       f"baselines --scale {scale} --spread`")
    elif weights_sha256 and stored_sha:
        header += "\ntier: tol — the same weights as the baseline's, so only a change of the code moves a metric"
    else:
        header += "\ntier: tol — each metric at its recompute tolerance"
    return Outcome("failed", path, rows, f"{header}:\n{table}", tier)


def load_paper_numbers(root: str | Path) -> dict[str, Any]:
    """``baselines/paper/published.json``: the paper's numbers with their source."""
    path = Path(root) / "paper" / "published.json"
    return json.loads(path.read_text())


CLAIMS_FORMAT = "lossbench-claims/1"


def check_verdicts(path: str | Path, verdicts: Mapping[str, str], converged: Mapping[str, bool], *,
                   source: Mapping[str, Any], numbers: Mapping[str, Any] | None = None, regen: bool = False,
                   regen_all: bool = False) -> Outcome:
    """Compare the claims' verdicts and the set of converged nets with ``baselines/<scale>/claims.json``.

    A claim whose verdict changed, a claim added or gone, and a net whose convergence changed each
    fail; so does a file that is missing (it is written: "review and commit"). ``numbers`` (the
    deciding numbers per claim) are stored for review but not compared: the metrics' own baselines
    guard them at their recompute tolerance.
    """
    path = Path(path)
    doc = {"format": CLAIMS_FORMAT, "verdicts": dict(sorted(verdicts.items())),
           "converged": dict(sorted(converged.items())), "source": dict(source), "numbers": dict(numbers or {})}
    if not path.exists():
        write_baseline(path, doc)
        return Outcome("created", path, message=f"created claims baseline {path}; review and commit it")
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BaselineFileError(f"claims baseline {path} is not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(stored, dict) or stored.get("format") != CLAIMS_FORMAT or not isinstance(stored.get("verdicts"), dict) \
            or not isinstance(stored.get("converged"), dict):
        raise BaselineFileError(f"{path}: expected format {CLAIMS_FORMAT!r} with objects 'verdicts' and 'converged'")
    lines = []
    for key in sorted(set(stored["verdicts"]) | set(verdicts)):
        a, b = stored["verdicts"].get(key, "missing"), verdicts.get(key, "missing")
        if a != b:
            lines.append(f"  FAIL {key}: recorded {a}, obtained {b}")
    for net in sorted(set(stored["converged"]) | set(converged)):
        a, b = stored["converged"].get(net), converged.get(net)
        if a != b:
            lines.append(f"  FAIL {net}: converged recorded {a}, obtained {b}")
    if not lines:
        return Outcome("passed", path)
    if regen or regen_all:
        write_baseline(path, doc)
        return Outcome("passed" if regen_all else "updated", path,
                       message=f"rewrote {path}:\n" + "\n".join(lines))
    write_baseline(path.with_name(f"{path.stem}.obtained.json"), doc)
    return Outcome("failed", path, message=f"{len(lines)} verdict(s) differ from {path}:\n" + "\n".join(lines))
