"""The paper's findings as checks over a matrix of measured nets: plain dicts in, verdicts out.

A record describes one net (what :func:`lossbench.reproduce.study_net` gives, with the seed spread
and the uncertainties of :func:`lossbench.baselines.uncertainty_context` merged in)::

    {"config_id", "config": {depth, shortcut, batch_size, optimizer, weight_decay, n_test, ...},
     "final": {train_loss, train_acc, test_loss, test_acc}, "converged": bool,
     "pairs": [surface metrics of direction pair k, ...],             # or "metrics": one pair
     "curvature": {eig_max, eig_min, eig_ratio_center, trace},         # at the minimum
     "pca": {"share", "random_share", "checkpoints", "random_walk_share", "random_walk_sd"},
     "lines": {"filter": [line metrics per pair], "none": [...]},     # 1D random lines
     "spectrum": {spec_lambda_max, spec_negative_share, ...},         # the stored Hessian spectrum
     "seeds": {"seeds": [1, 2], "metrics": {flat name: [value per seed]},
               "finals": [final per seed], "converged": [bool per seed]},
     "uncertainty": {flat name: {"sampling": sd, "numeric": largest recompute deviation}}}

Flat names are the baselines' (:func:`flat_metrics`): ``curv_max`` (pair 0), ``curv_max/p1``,
``eig_max``, ``pca_share``, ``line_filter_curv/p2``, ``test_error``, ...

**Numbers with their error.** Every number a claim uses is an :class:`Estimate`: the mean over the
training seeds (seed 0 from this session, the others from the baseline's spread) and its standard
uncertainty ``u`` = sqrt(seed sd^2 / n + sampling^2 + numeric^2): the seed-to-seed spread, the sampling
error of the images (disjoint image subsets for Hessian quantities, the binomial error of a test error
over its test images, the finite set of grid points of a non-convex fraction) and the numerical error
(the largest deviation between correct recomputations, float64 included).

**Verdicts.** A claim is one or more comparisons (:class:`Test`), each a ``margin`` that is positive
when the paper's finding holds, with its ``uncertainty`` in the same unit, measured on every direction
pair (or once, for numbers that have no direction). The pairs are a sample of directions, like the
seeds and the images: a comparison is decided on its mean margin over the pairs, whose uncertainty
includes the pair-to-pair spread (:func:`combine_pairs`); the per-pair numbers are kept. With
:data:`K` = 3:

* ``inconclusive``: a net it needs has not reached a minimum: seed 0, or so many other training
  seeds that fewer than :data:`MIN_SEEDS` did. A claim is about minima, so a further seed that did
  not reach one is left out where seed 0 and at least :data:`MIN_SEEDS` seeds in all did
  (:func:`at_minima`; the seed and its final accuracy stay named in the claim's nets);
* ``unresolved``: some |margin| <= K x uncertainty (or a number is missing: NaN, e.g. an eigenvalue
  Lanczos could not resolve), or a net it needs has fewer than :data:`MIN_SEEDS` training seeds (the
  seed-to-seed part of its error is then unknown, not zero): the data cannot decide;
* ``holds``: every margin > K x uncertainty;
* ``fails``: every |margin| > K x uncertainty and some margin is negative.

K = 3 because the seed part of ``u`` is estimated from three training seeds per config: Welch's t
with about four degrees of freedom needs 2.8 for a two-sided 95 % interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

HOLDS, FAILS, UNRESOLVED, INCONCLUSIVE = "holds", "fails", "unresolved", "inconclusive"
VERDICTS = (HOLDS, FAILS, UNRESOLVED, INCONCLUSIVE)

#: A margin decides only when it exceeds K times its uncertainty.
K = 3.0

#: Training seeds a net needs before a claim on it can be decided: K is set for the seed spread of
#: three seeds, and with one seed that spread is unknown.
MIN_SEEDS = 3

#: The paper reports that the top two PCA directions explain 40-90 % of the path's variance (their
#: section 7): "at least 40 %" is the claim (the upper end is what their runs happened to give).
PCA_SHARE_MIN = 0.4
#: "close to 0 %" for two random filter-normalised directions (their Figure 8).
RANDOM_SHARE_MAX = 0.01

#: Mode connectivity (Garipov et al. 2018; Draxler et al. 2018): two minima are "joined by a curve of
#: low loss" when the trained curve's barrier is at most this share of the straight line's. Their
#: curves keep the train loss nearly flat where the line rises by nats; a quarter leaves room for the
#: short curve training of the small scale while still requiring most of the line's barrier gone.
CONNECT_SHARE = 0.25

#: The batch size of the paper's Table 1 (CIFAR-10 test errors with and without skip connections).
TABLE1_BATCH = 128

#: Bootstrap replicates of a rank correlation, and its seed (the verdict is a function of the data).
BOOTSTRAP = 2000


# ----------------------------------------------------------------------------- numbers and their error


@dataclass(frozen=True)
class Estimate:
    """A number with its standard uncertainty.

    Attributes:
        value: mean over the training seeds that have it (seed 0 first in ``values``).
        u: standard uncertainty, sqrt(seeds^2 + sampling^2 + numeric^2) of :attr:`parts`.
        values: the per-seed values.
        parts: the three components of ``u`` (seeds: sd / sqrt(n); 0 with one seed).
        no_value: the training seeds whose value is NaN (an iterative method that did not converge
            there, or a metric not measured there), which leave the mean and ``u`` unknown.
    """

    value: float
    u: float
    values: tuple[float, ...] = ()
    parts: dict[str, float] = field(default_factory=dict)
    no_value: tuple[int, ...] = ()

    def __sub__(self, other: "Estimate") -> "Estimate":
        return Estimate(self.value - other.value, math.hypot(self.u, other.u))


def estimate(values: Sequence[float], *, sampling: float = 0.0, numeric: float = 0.0) -> Estimate:
    """Mean of per-seed ``values`` with u = sqrt(sd^2 / n + sampling^2 + numeric^2); NaN if any is NaN."""
    v = np.asarray(values, float)
    if len(v) == 0 or not np.all(np.isfinite(v)):
        return Estimate(math.nan, math.nan, tuple(v.tolist()))
    seeds = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    parts = {"seeds": seeds, "sampling": float(sampling), "numeric": float(numeric)}
    return Estimate(float(v.mean()), math.sqrt(sum(x * x for x in parts.values())), tuple(v.tolist()), parts)


def pair_suffix(k: int) -> str:
    """Metric-name suffix of direction pair k: none for pair 0, ``/p1`` for pair 1, ..."""
    return "" if k == 0 else f"/p{k}"


def flat_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """Every number of a session record under its baseline name (see the module docstring)."""
    out: dict[str, float] = {}
    for k, pair in enumerate(pairs_of(record)):
        out.update({f"{name}{pair_suffix(k)}": float(v) for name, v in pair.items()})
    out.update({name: float(v) for name, v in (record.get("curvature") or {}).items()})
    pca = record.get("pca")
    if pca:
        out["pca_share"], out["pca_random_share"] = float(pca["share"]), float(pca["random_share"])
    for norm, per in (record.get("lines") or {}).items():
        for k, m in enumerate(per):
            out.update({f"line_{norm}_{name}{pair_suffix(k)}": float(v) for name, v in m.items()})
    for name, v in (record.get("eig_map") or {}).items():
        out[f"eigmap_{name}"] = float(v)
    out.update({name: float(v) for name, v in (record.get("spectrum") or {}).items()})
    out["test_error"] = 1.0 - float(record["final"].get("test_acc", math.nan))
    return out


def number(record: Mapping[str, Any], name: str) -> Estimate:
    """The :class:`Estimate` of flat metric ``name`` of a record, over every training seed it has."""
    here = flat_metrics(record).get(name, math.nan)
    seeds = record.get("seeds") or {}
    if name == "test_error":
        others = [1.0 - float(f.get("test_acc", math.nan)) for f in seeds.get("finals", [])]
        values = [here, *others]
        n_test = int(record["config"].get("n_test", 0)) or 1
        # binomial error of each net's error over the test images, averaged over the seeds
        sampling = math.sqrt(sum(max(e * (1 - e), 0.0) / n_test for e in values if math.isfinite(e))) / len(values)
        return estimate(values, sampling=sampling)
    values = [here, *seeds.get("metrics", {}).get(name, [])]
    stored = len(seeds.get("finals", []))  # the training seeds the baseline measured besides this one
    unc = (record.get("uncertainty") or {}).get(name, {})
    sampling = float(unc.get("sampling", 0.0))
    if name.split("/")[0] == "nonconvex_fraction":  # a share of grid points: binomial over the region
        points = flat_metrics(record).get("nonconvex_points" + name[len("nonconvex_fraction"):], math.nan)
        if math.isfinite(points) and points > 0:
            f = float(np.nanmean(values))
            sampling = max(sampling, math.sqrt(max(f * (1 - f), 0.25 / points) / points))
    est = estimate(values, sampling=sampling, numeric=float(unc.get("numeric", 0.0)))
    ids = [int(record["config"].get("seed", 0)), *(seeds.get("seeds") or [])]
    if len(ids) == len(values) and not all(math.isfinite(v) for v in values):
        est = replace(est, no_value=tuple(i for i, v in zip(ids, values) if not math.isfinite(v)))
    if len(values) < 1 + stored:
        # the net has other seeds, but not this metric's values at them (a metric added or redefined since
        # they were measured): its seed-to-seed error is unknown, not zero, so nothing is decided on it
        return Estimate(est.value, math.nan, est.values, {**est.parts, "seeds": math.nan}, est.no_value)
    return est


def at_minima(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record with its further training seeds that did not reach a minimum left out, where seed 0
    and at least :data:`MIN_SEEDS` seeds in all did (then ``seeds["left_out"]`` names each with its
    final numbers); else the record as it is, which then counts as not at a minimum. A training seed's
    values are dropped from every per-seed list, the eigen-ratio map's and the spectrum's included (merge
    those first)."""
    seeds = record.get("seeds") or {}
    converged = list(seeds.get("converged") or [])
    ids = list(seeds.get("seeds") or [])
    if not record["converged"] or all(converged) or len(converged) != len(ids):
        return record
    keep = [i for i, c in enumerate(converged) if c]
    if 1 + len(keep) < MIN_SEEDS:
        return record
    finals = list(seeds.get("finals") or [])
    out = dict(record)
    out["seeds"] = {**seeds, "seeds": [ids[i] for i in keep],
                    "metrics": {k: [v[i] for i in keep] for k, v in (seeds.get("metrics") or {}).items()
                                if len(v) == len(ids)},
                    "finals": [finals[i] for i in keep] if len(finals) == len(ids) else [],
                    "converged": [True] * len(keep),
                    "left_out": [{"seed": ids[i], **(dict(finals[i]) if len(finals) == len(ids) else {})}
                                 for i in range(len(ids)) if not converged[i]]}
    return out


def all_converged(record: Mapping[str, Any]) -> bool:
    """Every training seed of the config reached a minimum (seed 0's and the stored seeds')."""
    return bool(record["converged"]) and all((record.get("seeds") or {}).get("converged", []))


# ----------------------------------------------------------------------------- tests and claims


@dataclass(frozen=True)
class Test:
    """One comparison: a margin (positive when the finding holds) and its uncertainty, same unit."""

    what: str
    margin: float
    uncertainty: float
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def decided(self) -> bool:
        return math.isfinite(self.margin) and math.isfinite(self.uncertainty) and abs(self.margin) > K * self.uncertainty

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "margin": self.margin, "uncertainty": self.uncertainty,
                "decided": self.decided, **self.numbers}


#: Suffix of a test's number that lists a net's training seeds with no value (``"<net> no value at seeds"``).
NO_VALUE = " no value at seeds"


def difference(what: str, a: Estimate, b: Estimate, *, names: tuple[str, str], scale: float = 1.0) -> Test:
    """``a - b`` as a test (times ``scale``, e.g. 100 for percentage points), with both numbers shown."""
    d = a - b
    missing = {f"{name}{NO_VALUE}": list(e.no_value) for name, e in zip(names, (a, b)) if e.no_value}
    return Test(what, scale * d.value, scale * d.u,
                {f"{names[0]}": scale * a.value, f"{names[0]} u": scale * a.u,
                 f"{names[1]}": scale * b.value, f"{names[1]} u": scale * b.u, **missing})


@dataclass(frozen=True)
class Claim:
    """One claim's verdict.

    Attributes:
        name: short name, e.g. ``depth-nonconvex-without-skips``.
        statement: the finding in words, with the condition tested.
        group: the slice of the matrix (``bs128``, a config id, ...).
        paper: the figure or table of the paper it tests.
        paper_number: the paper's own number where it gives one ("" otherwise).
        per_pair: per direction pair (or once), the tests; every one must be decided.
        verdict: one of :data:`VERDICTS`.
        nets: config_id -> final train loss/accuracy, test accuracy, converged (all seeds), seeds.
        paper_number: the paper's own number where it gives one.
        note: why an unresolved verdict is not decided other than by its margins, and which training
            seeds were left out as not at a minimum (:func:`at_minima`); "" otherwise.
    """

    name: str
    statement: str
    group: str
    paper: str
    per_pair: tuple[tuple[Test, ...], ...]
    verdict: str
    nets: dict[str, dict[str, Any]] = field(default_factory=dict)
    paper_number: str = ""
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}[{self.group}]"

    @property
    def tests(self) -> list[Test]:
        """The deciding tests: each comparison combined over the direction pairs (:func:`combine_pairs`)."""
        return list(combine_pairs(self.per_pair))

    def summary(self) -> str:
        """The deciding numbers, short: ``margin +- u`` of each test over the pairs, then pair by pair."""
        combined = ", ".join(f"{t.margin:+.3g} ± {t.uncertainty:.2g}" for t in self.tests)
        if len(self.per_pair) <= 1:
            return combined
        return combined + " (pairs: " + "; ".join(", ".join(f"{t.margin:+.3g} ± {t.uncertainty:.2g}" for t in pair)
                                                  for pair in self.per_pair) + ")"

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "statement": self.statement, "paper": self.paper,
                "paper_number": self.paper_number, "k": K, **({"note": self.note} if self.note else {}),
                "tests": [t.to_json() for t in self.tests],
                "pairs": [[t.to_json() for t in pair] for pair in self.per_pair]}


def combine_pairs(per_pair: Sequence[Sequence[Test]]) -> tuple[Test, ...]:
    """The direction pairs as a sample, like the seeds and the images: per comparison, the mean margin
    over the P pairs, with uncertainty sqrt(mean(u_k)^2 + sd_k(margin_k)^2 / P).

    The per-pair uncertainties u_k come from the same training seeds and images, so they are counted
    as fully correlated (their mean, not mean / sqrt(P)); the pairs' own scatter enters as the standard
    error of a mean over P draws. One pair (or numbers without a direction) is returned as it is; a NaN
    margin on any pair leaves the mean NaN (unresolved)."""
    pairs = [tuple(p) for p in per_pair]
    if len(pairs) <= 1:
        return pairs[0] if pairs else ()
    if len({len(p) for p in pairs}) != 1:
        raise ValueError(f"direction pairs with different comparisons: {[len(p) for p in pairs]} tests")
    out = []
    for tests in zip(*pairs):
        m = np.array([t.margin for t in tests], float)
        u = np.array([t.uncertainty for t in tests], float)
        spread = float(m.std(ddof=1) / math.sqrt(len(m)))
        numbers = {"pairs": len(m), "pair margins": [float(x) for x in m], "pair spread": spread,
                   "within-pair u": float(u.mean())}
        out.append(Test(tests[0].what, float(m.mean()), math.hypot(float(u.mean()), spread), numbers))
    return tuple(out)


def verdict_of(per_pair: Sequence[Sequence[Test]], converged: bool, seeds: int = MIN_SEEDS) -> str:
    """The rule of the module docstring, on the tests combined over the direction pairs
    (:func:`combine_pairs`); ``seeds`` is the fewest training seeds of the nets used."""
    tests = list(combine_pairs(per_pair))
    if not converged:
        return INCONCLUSIVE
    if seeds < MIN_SEEDS or not tests or not all(t.decided for t in tests):
        return UNRESOLVED
    return HOLDS if all(t.margin > 0 for t in tests) else FAILS


def _claim(name: str, statement: str, group: str, paper: str, per_pair: Sequence[Sequence[Test]],
           nets: Sequence[Mapping[str, Any]], paper_number: str = "", needs_minimum: bool = True) -> Claim:
    """A claim over ``nets``; ``needs_minimum=False`` for a claim about reaching a minimum itself
    (judged whatever the nets reached)."""
    info = {r["config_id"]: {"train_loss": r["final"]["train_loss"], "train_acc": r["final"]["train_acc"],
                             "test_acc": r["final"].get("test_acc", math.nan), "converged": all_converged(r),
                             "seeds": 1 + len((r.get("seeds") or {}).get("finals", [])),
                             **({"left_out": r["seeds"]["left_out"]} if (r.get("seeds") or {}).get("left_out")
                                else {})}
            for r in nets}
    per_pair = tuple(tuple(p) for p in per_pair)
    seeds = min((v["seeds"] for v in info.values()), default=0)
    verdict = verdict_of(per_pair, not needs_minimum or all(v["converged"] for v in info.values()), seeds)
    note = ""
    if verdict == UNRESOLVED and seeds < MIN_SEEDS:
        few = sorted(k for k, v in info.items() if v["seeds"] < MIN_SEEDS)
        note = (f"{', '.join(few)}: {seeds} of {MIN_SEEDS} training seeds, the seed-to-seed error unknown "
                f"(train and ship seeds 1-2)")
    elif verdict == UNRESOLVED and any(math.isnan(t.uncertainty) for t in combine_pairs(per_pair)):
        note = ("an uncertainty is unknown: a number lacks its values at the other training seeds (measured on "
                "weights that are not shipped, or not measured there yet) or did not converge")
        missing = sorted({f"{t.what}: {key.removesuffix(NO_VALUE)} has none at seed {', '.join(map(str, at))}"
                          for tests in per_pair for t in tests for key, at in t.numbers.items()
                          if key.endswith(NO_VALUE)})
        if missing:
            note += " (" + "; ".join(missing) + ")"
    out = [_left_out(k, v["left_out"]) for k, v in sorted(info.items()) if v.get("left_out")]
    if out:
        note = "; ".join(([note] if note else []) + out)
    return Claim(name, statement, group, paper, per_pair, verdict, info, paper_number, note)


def _left_out(config_id: str, left_out: list[dict]) -> str:
    """One net's seeds left out as not at a minimum, in one phrase (the id once, however many seeds)."""
    seeds = ", ".join(str(x["seed"]) for x in left_out)
    accs = ", ".join(f"{x.get('train_acc', math.nan):.3f}" for x in left_out)
    return f"{config_id}: seed{'s' if len(left_out) > 1 else ''} {seeds} left out, not at a minimum (train acc {accs})"


def missing_nets(expected: Iterable[str], recorded: Iterable[str], selected: Iterable[str]) -> tuple[str, str] | None:
    """Whether the claims can be judged when some nets have no record: None (all there),
    ``("skip", why)`` when the missing nets were not selected in this session (a partial run), or
    ``("fail", why)`` when they were selected and recorded nothing: their tests failed before their
    metrics, so a method that breaks a net's metrics breaks the claims instead of skipping them."""
    missing = sorted(set(expected) - set(recorded))
    if not missing:
        return None
    selected = set(selected)
    broken = [m for m in missing if m in selected]
    if broken:
        return "fail", (f"the claims cannot be judged: {broken} ran in this session but recorded no metrics "
                        "(their tests failed before measuring, see above)")
    return "skip", f"the claims need every net in this session; missing {missing}"


def pairs_of(record: Mapping[str, Any]) -> list[Mapping[str, float]]:
    """The per-direction-pair surface metrics of a record (one pair for a flat ``metrics`` record)."""
    if "pairs" in record:
        return list(record["pairs"])
    return [record["metrics"]] if "metrics" in record else []


def _n_pairs(records: Sequence[Mapping[str, Any]]) -> int:
    return min(len(pairs_of(r)) for r in records)


def recipe_of(record: Mapping[str, Any]) -> str:
    """Which recipe trained a record's net: ``seed`` (Adam, width 1, the seed's init), ``authors``
    (the authors' recipe with their initialisation, :func:`lossbench.config.paper_recipe`) or ``other``
    (the SGD nets of the filter-normalisation experiment, the wide nets)."""
    c = record["config"]
    if c.get("init") == "authors":
        return "authors"
    if c.get("optimizer", "adam") == "adam" and c.get("width", 1) == 1:
        return "seed"
    return "other"


def _find(records: Sequence[Mapping[str, Any]], *, depth: int, shortcut: bool, batch_size: int,
          optimizer: str | None = None, weight_decay: float | None = None,
          width: int = 1) -> Mapping[str, Any] | None:
    """The record of a ResNet among ``records`` (one recipe's nets); ``optimizer`` and ``weight_decay``
    narrow it further where given."""
    for r in records:
        c = r["config"]
        if ((c.get("arch", "resnet"), c["depth"], c["shortcut"], c["batch_size"], c.get("width", 1))
                == ("resnet", depth, shortcut, batch_size, width)
                and optimizer in (None, c.get("optimizer", "adam"))
                and weight_decay in (None, c.get("weight_decay", 0.0))):
            return r
    return None


def _label(r: Mapping[str, Any]) -> str:
    c = r["config"]
    return f"{c['depth']}{'' if c['shortcut'] else '-noshort'}"


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN with fewer than 3 points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return math.nan
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


# ----------------------------------------------------------------------------- the claims


def evaluate_claims(records: Sequence[Mapping[str, Any]],
                    eig_maps: Mapping[str, Mapping[str, Any]] | None = None,
                    published: Mapping[str, float] | None = None,
                    connections: Mapping[str, Mapping[str, Any]] | None = None,
                    spectra: Mapping[str, Mapping[str, Any]] | None = None) -> list[Claim]:
    """Every claim that the given nets allow (a claim whose nets are absent is not listed).

    Args:
        records: one per net (see the module docstring).
        eig_maps: config_id -> eigen-ratio map record ``{"summary": {...}, "seeds": ..., "uncertainty": ...}``
            (or a bare summary), merged into that net's record as ``eig_map``.
        published: the paper's test errors in percent by model name (``baselines/paper/published.json``).
        connections: config_id -> ``{"pairs": [{"seeds": [i, j], "barrier": {"line": {"train": nats},
            "curve": {...}}, "barrier_error": {same layout}}, ...]}``: the curves trained between the
            config's training seeds (``baselines/<scale>/connect/<config_id>.json``).
        spectra: config_id -> ``{"summary": {spec_...}, "seeds": ..., "uncertainty": ...}``: the stored
            Hessian spectrum (``baselines/<scale>/spectrum/<config_id>.json``, its ``summary`` with
            :func:`lossbench.baselines.uncertainty_context`), merged into that net's record as ``spectrum``.
    """
    records = [dict(r) for r in records]
    for r in records:
        m = (eig_maps or {}).get(r["config_id"])
        if m:
            _merge_eig_map(r, m)
        m = (spectra or {}).get(r["config_id"])
        if m:
            _merge_spectrum(r, m)
    records = [dict(at_minima(r)) for r in records]
    claims: list[Claim] = []
    seed = [r for r in records if recipe_of(r) == "seed"]
    batch_sizes = sorted({r["config"]["batch_size"] for r in seed})
    # the depth matrix's claims under each recipe that trained one: the seed's (groups ``bs128``) and the
    # authors' (``authors-bs128``); each recipe's nets are compared only with each other
    for recipe, prefix in (("seed", ""), ("authors", "authors-")):
        nets = [r for r in records if recipe_of(r) == recipe]
        for bs in sorted({r["config"]["batch_size"] for r in nets}):
            group = f"{prefix}bs{bs}"
            # the paper's Table 1 is at batch 128: its numbers stand beside those claims only
            claims += _table1_claims(nets, bs, (published or {}) if bs == TABLE1_BATCH else {}, group)
            claims += _depth_claims(nets, bs, group)
            claims += _skip_claims(nets, bs, group)
    claims += _large_batch_claims(seed, batch_sizes)
    claims += _spectrum_claims(seed, batch_sizes)
    authors = [r for r in records if recipe_of(r) == "authors"]
    claims += _spectrum_claims(authors, sorted({r["config"]["batch_size"] for r in authors}), prefix="authors-")
    claims += _filter_normalisation_claims(records)
    # the authors' depth matrix stays out of the correlation until it is judged on its own: one recipe's
    # nets added to another's would move a verdict by the mixing, not by the finding
    claims += _correlation_claims([r for r in records if recipe_of(r) != "authors"], batch_sizes)
    claims += _pca_claims(records)
    claims += _connect_claims(records, connections or {})
    return claims


def _merge_eig_map(record: dict[str, Any], m: Mapping[str, Any]) -> None:
    summary = m.get("summary", m)
    record["eig_map"] = dict(summary)
    seeds = dict(record.get("seeds") or {})
    metrics = dict(seeds.get("metrics", {}))
    theirs = m.get("seeds") or {}
    # values of the same training seeds only (a map's spread of other seeds leaves its seed error unknown)
    same = list(theirs.get("seeds", [])) == list(seeds.get("seeds", []))
    for name, values in (theirs.get("metrics", {}) if same else {}).items():
        metrics[f"eigmap_{name}"] = values
    seeds["metrics"] = metrics
    record["seeds"] = seeds
    record["uncertainty"] = {**(record.get("uncertainty") or {}),
                             **{f"eigmap_{k}": v for k, v in (m.get("uncertainty") or {}).items()}}


def _merge_spectrum(record: dict[str, Any], m: Mapping[str, Any]) -> None:
    """The stored spectrum's summary into ``record["spectrum"]``, its other seeds' values where they are of
    the same training seeds as the record's, and each number's uncertainty: the image subsets' sd
    (``sampling``) with the probes' standard error of a number that has one (``<name>_err``: SLQ's random
    start vectors are a sample too) and, as its numerical error, the quadrature's bound
    (``<name>_bound``) beside the recompute jitter."""
    summary = dict(m.get("summary") or {})
    record["spectrum"] = summary
    theirs = m.get("seeds") or {}
    seeds = dict(record.get("seeds") or {})
    if list(theirs.get("seeds", [])) == list(seeds.get("seeds", [])):
        seeds["metrics"] = {**seeds.get("metrics", {}), **theirs.get("metrics", {})}
        record["seeds"] = seeds
    unc = {**(record.get("uncertainty") or {})}
    given = m.get("uncertainty") or {}
    for name in summary:
        if name.endswith(("_err", "_bound")):
            continue
        u = dict(given.get(name, {}))
        err, bound = summary.get(f"{name}_err"), summary.get(f"{name}_bound")
        if err is not None:
            u["sampling"] = math.hypot(float(u.get("sampling", 0.0)), float(err))
        if bound is not None:
            u["numeric"] = math.hypot(float(u.get("numeric", 0.0)), float(bound))
        unc[name] = u
    record["uncertainty"] = unc


def _table1_claims(records, bs: int, published: Mapping[str, float], group: str) -> list[Claim]:
    """Table 1 / Figure 5 captions: test error against depth, with and without skip connections."""
    out = []
    nets = {(d, s): _find(records, depth=d, shortcut=s, batch_size=bs) for d in (20, 56, 110) for s in (True, False)}

    def err(r):
        return number(r, "test_error")

    for deep in (56, 110):
        shallow = 20 if deep == 56 else 56
        a, b = nets[(shallow, False)], nets[(deep, False)]
        if not (a and b):
            continue
        p = published
        paper = (f"{p.get(f'resnet{shallow}-noshort', math.nan):g} % -> {p.get(f'resnet{deep}-noshort', math.nan):g} %"
                 if p else "")
        out.append(_claim(
            "table1-error-grows-with-depth-without-skips",
            f"without skip connections ResNet-{deep} has a higher test error than ResNet-{shallow} "
            "(percentage points; seeds and a binomial error over the test images)",
            group if deep == 56 else f"{group}-110", "Table 1 (Figure 5 captions)",
            [[difference(f"test error {deep}-noshort - {shallow}-noshort (pp)", err(b), err(a),
                         names=(f"test error {deep}-noshort %", f"test error {shallow}-noshort %"), scale=100)]],
            [a, b], paper))
        sa, sb = nets[(shallow, True)], nets[(deep, True)]
        if sa and sb:
            growth_without = err(b) - err(a)
            growth_with = err(sb) - err(sa)
            gap = growth_without - growth_with
            paper = ""
            if p:
                gw = p.get(f"resnet{deep}-noshort", math.nan) - p.get(f"resnet{shallow}-noshort", math.nan)
                gs = p.get(f"resnet{deep}", math.nan) - p.get(f"resnet{shallow}", math.nan)
                paper = f"{gw:+.2f} pp without skips, {gs:+.2f} pp with"
            out.append(_claim(
                "table1-skips-stop-error-growing-with-depth",
                f"from ResNet-{shallow} to ResNet-{deep} the test error grows more without skip connections than "
                "with them (difference of the two growths, percentage points)",
                group if deep == 56 else f"{group}-110", "Table 1 (Figure 5 captions)",
                [[Test("growth without - growth with skips (pp)", 100 * gap.value, 100 * gap.u,
                       {"growth without skips pp": 100 * growth_without.value,
                        "growth with skips pp": 100 * growth_with.value})]],
                [a, b, sa, sb], paper))
    return out


def _per_pair_diff(a, b, metric: str, what: str, names: tuple[str, str]) -> list[list[Test]]:
    return [[difference(what, number(a, metric + pair_suffix(k)), number(b, metric + pair_suffix(k)), names=names)]
            for k in range(_n_pairs([a, b]))]


def _train_error(r: Mapping[str, Any]) -> Estimate:
    """Eval-mode training error over the training seeds (no sampling error: the training set is the set)."""
    finals = [r["final"], *((r.get("seeds") or {}).get("finals", []))]
    return estimate([1.0 - float(f.get("train_acc", math.nan)) for f in finals])


def _depth_claims(records, bs: int, group: str) -> list[Claim]:
    """Figures 5 and 7: without skips, the deeper net is less convex; and section 5: it loses
    trainability ("the transition to chaotic landscapes ... ultimately leads to a lack of trainability")."""
    out = []
    a = _find(records, depth=20, shortcut=False, batch_size=bs)
    b = _find(records, depth=56, shortcut=False, batch_size=bs)
    if not (a and b):
        return out
    skip = _find(records, depth=56, shortcut=True, batch_size=bs)
    if skip:
        tests = [difference("train error 56-noshort - 20-noshort (pp)", _train_error(b), _train_error(a),
                            names=("train error 56-noshort %", "train error 20-noshort %"), scale=100),
                 difference("train error 56-noshort - 56 (pp)", _train_error(b), _train_error(skip),
                            names=("train error 56-noshort %", "train error 56 %"), scale=100)]
        out.append(_claim(
            "depth-without-skips-loses-trainability",
            "in the same training budget ResNet-56 without skip connections fits its training set less well than "
            "ResNet-20 without them and than ResNet-56 with them (eval-mode training error, percentage points)",
            group, "Section 5", [tests], [a, b, skip], needs_minimum=False))
    out.append(_claim(
        "depth-nonconvex-without-skips",
        "without skip connections ResNet-56's filter-normalised surface has a larger non-convex fraction than "
        "ResNet-20's (points within radius 1 whose loss is below ln 10 above the minimum)", group, "Figure 5",
        _per_pair_diff(b, a, "nonconvex_fraction", "non-convex fraction 56-noshort - 20-noshort",
                       ("56-noshort", "20-noshort")), [a, b]))
    out.append(_claim(
        "depth-eig-ratio-without-skips",
        "without skip connections ResNet-56 has a larger |lambda_min / lambda_max| at the minimum than ResNet-20",
        group, "Figure 7",
        [[difference("eig ratio 56-noshort - 20-noshort", number(b, "eig_ratio_center"), number(a, "eig_ratio_center"),
                     names=("56-noshort", "20-noshort"))]], [a, b]))
    return out


def _skip_claims(records, bs: int, group: str) -> list[Claim]:
    """Figures 5 and 7: skip connections keep the deep net's landscape convex."""
    out = []
    s20 = _find(records, depth=20, shortcut=True, batch_size=bs)
    for deep in (56, 110):
        s, n = _find(records, depth=deep, shortcut=True, batch_size=bs), _find(records, depth=deep, shortcut=False,
                                                                                 batch_size=bs)
        if not (s and n):
            continue
        out.append(_claim(
            "skips-prevent-nonconvexity",
            f"ResNet-{deep} without skip connections has a larger non-convex fraction than with them",
            group, "Figure 5",
            _per_pair_diff(n, s, "nonconvex_fraction", f"non-convex fraction {deep}-noshort - {deep}",
                           (f"{deep}-noshort", f"{deep}")), [s, n]))
        if s20:
            per = []
            for k in range(_n_pairs([s20, s, n])):
                name = "nonconvex_fraction" + pair_suffix(k)
                f20, fs, fn = number(s20, name), number(s, name), number(n, name)
                skip, depth = fn - fs, fs - f20
                # the skip effect at this depth must exceed the depth effect with skips, |fs - f20|
                per.append([Test(f"(nc {deep}-noshort - nc {deep}) - |nc {deep} - nc 20|",
                                 skip.value - abs(depth.value), math.hypot(skip.u, depth.u),
                                 {f"nc {deep}-noshort": fn.value, f"nc {deep}": fs.value, "nc 20": f20.value})])
            out.append(_claim(
                "skips-keep-deep-nets-as-convex-as-shallow",
                f"with skip connections ResNet-{deep} is about as convex as ResNet-20: its difference from ResNet-20 "
                f"is smaller than the gap to ResNet-{deep} without skips", group, "Figure 5", per, [s20, s, n]))
        out.append(_claim(
            "larger-eig-ratio-without-skips",
            f"without skip connections ResNet-{deep} has a larger |lambda_min / lambda_max| at the minimum",
            group, "Figure 7",
            [[difference(f"eig ratio {deep}-noshort - {deep}", number(n, "eig_ratio_center"),
                         number(s, "eig_ratio_center"), names=(f"{deep}-noshort", f"{deep}"))]], [s, n]))
        if s.get("eig_map") and n.get("eig_map"):
            out.append(_claim(
                "larger-eig-ratio-map-without-skips",
                f"without skip connections ResNet-{deep}'s eigen-ratio map has a larger mean |lambda_min / lambda_max| "
                "(points where both ends resolved)", group, "Figure 7",
                [[difference(f"map mean eig ratio {deep}-noshort - {deep}", number(n, "eigmap_eig_ratio_mean"),
                             number(s, "eigmap_eig_ratio_mean"), names=(f"{deep}-noshort", f"{deep}"))]], [s, n]))
    return out


def _large_batch_claims(records, batch_sizes: list[int]) -> list[Claim]:
    """Figure 3 (and Keskar et al.): large batches find sharper minima, on filter-normalised directions."""
    out = []
    for net, (small, large), (a, b) in _batch_pairs(records, batch_sizes):
        out.append(_claim(
            "large-batch-sharper",
            f"batch {large} finds a sharper minimum than batch {small}: a larger curvature curv_max of the "
            "filter-normalised surface at the minimum", net,
            "Figure 3", _per_pair_diff(b, a, "curv_max", f"curv_max bs{large} - bs{small}",
                                       (f"bs{large}", f"bs{small}")), [a, b]))
    return out


def _batch_pairs(records, batch_sizes: list[int]):
    """(net label ``resnet<depth>[-noshort]``, (smallest, largest batch size), (its record at each)) for
    every depth x shortcut whose records at both batch sizes are among ``records``."""
    if len(batch_sizes) < 2:
        return
    small, large = batch_sizes[0], batch_sizes[-1]
    for depth in sorted({r["config"]["depth"] for r in records}):
        for shortcut in (True, False):
            a = _find(records, depth=depth, shortcut=shortcut, batch_size=small)
            b = _find(records, depth=depth, shortcut=shortcut, batch_size=large)
            if a and b:
                yield f"resnet{depth}{'' if shortcut else '-noshort'}", (small, large), (a, b)


def _spectrum_claims(records, batch_sizes: list[int], prefix: str = "") -> list[Claim]:
    """The Hessian's spectrum at the minimum (beyond the paper): large batches give a larger top
    eigenvalue (Keskar et al. 2017; Yao et al. 2018), and without skip connections more of the spectrum
    is negative (the density behind the paper's Figure 7 ratio; Ghorbani et al. 2019's negative mass,
    here as the negative share of the squared spectrum, which does not count a null cluster's rounding:
    :meth:`lossbench.hessian.Spectrum.negative_share`).
    Judged on the nets whose stored spectrum is merged in (``evaluate_claims(spectra=...)``), one
    recipe's nets at a time: ``prefix`` starts the keys' groups of any recipe but the seed's."""
    out = []
    with_spectrum = [r for r in records if r.get("spectrum")]
    depths = sorted({r["config"]["depth"] for r in with_spectrum})
    for net, (small, large), (a, b) in _batch_pairs(with_spectrum, batch_sizes):
        out.append(_claim(
            "large-batch-larger-top-eigenvalue",
            f"batch {large} finds a minimum whose Hessian has a larger top eigenvalue lambda_max than "
            f"batch {small}'s (Lanczos over the spectrum's images, nats per unit^2)", f"{prefix}{net}",
            "Keskar et al. 2017; Yao et al. 2018 (beyond this paper)",
            [[difference(f"lambda_max bs{large} - bs{small}", number(b, "spec_lambda_max"),
                         number(a, "spec_lambda_max"), names=(f"bs{large}", f"bs{small}"))]], [a, b]))
    for bs in batch_sizes:
        for depth in depths:
            s = _find(with_spectrum, depth=depth, shortcut=True, batch_size=bs)
            n = _find(with_spectrum, depth=depth, shortcut=False, batch_size=bs)
            if not (s and n):
                continue
            out.append(_claim(
                "more-negative-curvature-without-skips",
                f"without skip connections a larger share of ResNet-{depth}'s squared Hessian spectrum is negative, "
                "sum_{lambda<0} lambda^2 / sum lambda^2 by SLQ, than with them", f"{prefix}resnet{depth}-bs{bs}",
                "Figure 7 as a density; Ghorbani et al. 2019 (beyond this paper)",
                [[difference(f"negative share {depth}-noshort - {depth}", number(n, "spec_negative_share"),
                             number(s, "spec_negative_share"), names=(f"{depth}-noshort", f"{depth}"))]], [s, n]))
    return out


def _filter_normalisation_claims(records) -> list[Claim]:
    """Section 4, Figures 2-3: with filter-normalised directions the flatter minimiser is the one that
    generalises better, at both weight decays; without normalisation the ordering can flip with weight
    decay."""
    out = []
    sgd = [r for r in records if recipe_of(r) == "other" and r["config"].get("optimizer", "adam") == "sgd"
           and r.get("lines")]
    decays = sorted({r["config"]["weight_decay"] for r in sgd})
    sizes = sorted({r["config"]["batch_size"] for r in sgd})
    if len(sizes) < 2:
        return out
    small, large = sizes[0], sizes[-1]
    unnormalised: dict[float, tuple] = {}
    for wd in decays:
        a = _find(sgd, depth=20, shortcut=True, batch_size=small, optimizer="sgd", weight_decay=wd)
        b = _find(sgd, depth=20, shortcut=True, batch_size=large, optimizer="sgd", weight_decay=wd)
        if not (a and b):
            continue
        err = number(b, "test_error") - number(a, "test_error")
        sign = 1.0 if err.value >= 0 else -1.0
        per = []
        n = min(len(a["lines"]["filter"]), len(b["lines"]["filter"]))
        for k in range(n):
            curv = number(b, f"line_filter_curv{pair_suffix(k)}") - number(a, f"line_filter_curv{pair_suffix(k)}")
            per.append([
                Test(f"|test error bs{large} - bs{small}| (pp): a difference to track", 100 * abs(err.value),
                     100 * err.u, {f"test error bs{large} - bs{small} pp": 100 * err.value}),
                Test("curv (filter) of the worse minus the better net", sign * curv.value, curv.u,
                     {f"curv (filter) bs{large} - bs{small}": curv.value}),
            ])
        out.append(_claim(
            "filter-normalised-sharpness-tracks-error",
            f"with filter-normalised directions the minimiser with the lower test error is the flatter one "
            f"(1D curvature at the minimum), batch {small} against {large}", f"sgd-wd{wd:g}", "Figures 2-3", per,
            [a, b]))
        na = [number(a, f"line_none_curv{pair_suffix(k)}") for k in range(len(a["lines"].get("none", [])))]
        nb = [number(b, f"line_none_curv{pair_suffix(k)}") for k in range(len(b["lines"].get("none", [])))]
        unnormalised[wd] = (a, b, na, nb)
    if len(unnormalised) == 2:
        (wd0, (a0, b0, na0, nb0)), (wd1, (a1, b1, na1, nb1)) = sorted(unnormalised.items())
        per = []
        for k in range(min(len(na0), len(nb0), len(na1), len(nb1))):
            d0, d1 = nb0[k] - na0[k], nb1[k] - na1[k]
            sign = 1.0 if d0.value >= 0 else -1.0
            per.append([
                Test(f"|curv (none) bs{large} - bs{small}| at wd {wd0:g}: an ordering to flip", abs(d0.value), d0.u,
                     {f"curv (none) bs{large} - bs{small} wd{wd0:g}": d0.value}),
                Test(f"the same difference at wd {wd1:g}, with the opposite sign", -sign * d1.value, d1.u,
                     {f"curv (none) bs{large} - bs{small} wd{wd1:g}": d1.value}),
            ])
        out.append(_claim(
            "unnormalised-ordering-flips-with-weight-decay",
            f"without normalisation the flatter-looking of the batch {small} and {large} minimisers changes "
            "with weight decay (unnormalised plots mislead); the curvature at the minimum along raw Gaussian "
            "directions, per unit of the raw direction, fitted over the same perturbations relative to each "
            "net's weights as the filter-normalised lines (inside the basin)", "sgd", "Figures 2-3", per,
            [a0, b0, a1, b1]))
    return out


SHARPNESS_METRIC = "curv_max"


def _correlation_claims(records, batch_sizes: list[int]) -> list[Claim]:
    """Figures 2-3's broader point: sharper minima generalise worse. Spearman's rho between curv_max
    (filter-normalised, mean over seeds) and the test error, judged by a bootstrap over training seeds
    and test images, over every config and within each batch size."""
    out = []
    groups = [("all", list(records))] + [(f"bs{bs}", [r for r in records if r["config"]["batch_size"] == bs])
                                         for bs in batch_sizes if len(batch_sizes) > 1]
    for group, nets in groups:
        nets = [r for r in nets if pairs_of(r)]
        if len(nets) < 4:
            continue
        per = []
        for k in range(_n_pairs(nets)):
            name = SHARPNESS_METRIC + pair_suffix(k)
            rho, sd = _bootstrap_spearman([number(r, name) for r in nets], [number(r, "test_error") for r in nets],
                                          [int(r["config"].get("n_test", 0)) or 1 for r in nets], seed=k)
            per.append([Test(f"spearman(curv_max, test error) over {len(nets)} configs", rho, sd,
                             {"nets": float(len(nets)), "bootstrap lower bound (rho - K sd)": rho - K * sd})])
        out.append(_claim(
            "sharpness-tracks-test-error",
            "sharper minima (curv_max of the filter-normalised surface) have higher test error: Spearman's rho over "
            "the configs, its uncertainty the sd of a bootstrap over training seeds and test images",
            group, "Figures 2-3", per, nets))
    return out


def _bootstrap_spearman(sharp: Sequence[Estimate], err: Sequence[Estimate], n_test: Sequence[int], *,
                        seed: int) -> tuple[float, float]:
    """(rho of the seed means, sd of rho over :data:`BOOTSTRAP` replicates that resample each config's
    training seeds (the sharpness and the error of one seed together) and draw each test error from its
    binomial over the test images)."""
    if any(not math.isfinite(e.value) for e in (*sharp, *err)):
        return math.nan, math.nan
    from scipy.stats import rankdata

    rho = spearman([e.value for e in sharp], [e.value for e in err])
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for s, e, n in zip(sharp, err, n_test):
        sv, ev = np.asarray(s.values, float), np.asarray(e.values, float)
        if len(sv) == len(ev):
            idx = rng.integers(0, len(sv), (BOOTSTRAP, len(sv)))
            sv, ev = sv[idx], ev[idx]  # (B, seeds)
        else:  # no pairing of seeds: keep the values, resample the test images only
            sv, ev = np.broadcast_to(sv, (BOOTSTRAP, len(sv))), np.broadcast_to(ev, (BOOTSTRAP, len(ev)))
        xs.append(sv.mean(1))
        ys.append((rng.binomial(n, np.clip(ev, 0, 1)) / n).mean(1))
    rx, ry = rankdata(np.stack(xs, 1), axis=1), rankdata(np.stack(ys, 1), axis=1)  # (B, configs)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    finite = reps[np.isfinite(reps)]
    return rho, float(finite.std(ddof=1)) if len(finite) > 1 else math.nan


def _pca_claims(records) -> list[Claim]:
    """Section 7 (Figure 8): two PCA directions capture the path (at least 40 % of its variance), two
    random directions almost none; and, as a null model, more than a random walk sampled at the same
    checkpoints gets from the same PCA."""
    out = []
    for r in records:
        pca = r.get("pca")
        if not pca:
            continue
        share, rand = number(r, "pca_share"), number(r, "pca_random_share")
        out.append(_claim(
            "pca-explains-path",
            f"the top two PCA directions explain at least {PCA_SHARE_MIN:.0%} of the training path's variance "
            f"({pca['checkpoints']} checkpoints), two random filter-normalised directions at most "
            f"{RANDOM_SHARE_MAX:.0%}", r["config_id"], "Section 7, Figure 8",
            [[Test(f"top-2 share - {PCA_SHARE_MIN:g}", share.value - PCA_SHARE_MIN, share.u, {"share": share.value}),
              Test(f"{RANDOM_SHARE_MAX:g} - random share", RANDOM_SHARE_MAX - rand.value, rand.u,
                   {"random share": rand.value})]], [r], "40-90 %"))
        if "random_walk_share" in pca:
            walk = Estimate(float(pca["random_walk_share"]), float(pca.get("random_walk_sd", 0.0)))
            d = share - walk
            out.append(_claim(
                "pca-path-lower-dimensional-than-random-walk",
                "the top two PCA directions explain more of the training path than they do of a random walk sampled "
                "at the same number of checkpoints (the null model: a path with no low-dimensional structure)",
                r["config_id"], "Section 7 (a control the paper does not run)",
                [[Test("top-2 share - random walk's", d.value, d.u, {"share": share.value, "random walk": walk.value})]],
                [r]))
    return out


def _connect_claims(records, connections: Mapping[str, Mapping[str, Any]]) -> list[Claim]:
    """Mode connectivity (Garipov et al. 2018, Figures 1-2; Draxler et al. 2018): the minima a config
    reaches from different training seeds are joined by a quadratic Bezier curve whose train-loss barrier
    is at most :data:`CONNECT_SHARE` of the straight line's. The seed pairs are the sample (like the
    direction pairs of the other claims): per pair, margin = share x line barrier - curve barrier (nats)
    with the barriers' sampling errors over the images; the pairs' spread enters by :func:`combine_pairs`."""
    out = []
    for config_id, conn in sorted(connections.items()):
        r = next((x for x in records if x["config_id"] == config_id), None)
        if r is None or not conn.get("pairs"):
            continue
        per_pair = []
        for p in conn["pairs"]:
            b, e = p["barrier"], p.get("barrier_error", {})
            line, curve = float(b["line"]["train"]), float(b["curve"]["train"])
            u = math.hypot(CONNECT_SHARE * float(e.get("line", {}).get("train", math.nan)),
                           float(e.get("curve", {}).get("train", math.nan)))
            per_pair.append([Test(f"{CONNECT_SHARE:g} x line barrier - curve barrier (train loss, nats)",
                                  CONNECT_SHARE * line - curve, u,
                                  {"seeds": "-".join(map(str, p["seeds"])), "line barrier": line,
                                   "curve barrier": curve})])
        out.append(_claim(
            "minima-connected-by-a-curve",
            f"the minima of different training seeds are joined by a quadratic Bezier curve whose train-loss "
            f"barrier is at most {CONNECT_SHARE:g} of the straight line's (seed pairs "
            f"{', '.join('-'.join(map(str, p['seeds'])) for p in conn['pairs'])})", config_id,
            "Garipov et al. 2018 (Figures 1-2); Draxler et al. 2018 (beyond this paper)", per_pair, [r]))
    return out


def claims_json(claims: Sequence[Claim]) -> dict[str, Any]:
    """``claim key -> claim.to_json()``, sorted: the ``numbers`` of ``claims.json``."""
    return {c.key: c.to_json() for c in sorted(claims, key=lambda c: c.key)}


def count_verdicts(claims: Sequence[Claim]) -> dict[str, int]:
    return {v: sum(c.verdict == v for c in claims) for v in VERDICTS}

