"""The paper's findings as checks over a matrix of measured nets (plain dicts in, verdicts out).

A record describes one net (what :func:`lossbench.reproduce.study_record` and
:meth:`lossbench.reproduce.Reproduction.to_json` give)::

    {"config_id", "config": {depth, shortcut, batch_size, optimizer, weight_decay, ...},
     "final": {train_loss, train_acc, test_loss, test_acc}, "converged": bool,
     "pairs": [metrics of the 2D surface on direction pair k, ...],   # or "metrics": one pair
     "curvature": {eig_max, eig_min, eig_ratio_center, trace},         # optional (or in "metrics")
     "pca": {"share", "random_share", "checkpoints"},                  # optional
     "lines": {"filter": [line metrics per seed], "none": [...]},     # optional (1D random lines)
     "eig_map": {eig_ratio_mean, ...}}                                 # optional

A claim compares nets. It is judged on every direction pair separately and *holds* only if it holds
on each (ties do not hold); the per-pair numbers are kept. It is *inconclusive* when a net it needs
has not reached a minimum (the numbers are still reported, never hidden).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"

#: The paper reports that the top two PCA directions explain 40-90 % of the path's variance, and
#: that random directions capture almost none of it (their Figure 8).
PCA_SHARE_RANGE = (0.4, 0.9)
#: "close to 0 %" for two random directions.
RANDOM_SHARE_MAX = 0.01


@dataclass(frozen=True)
class Claim:
    """One claim's verdict.

    Attributes:
        key: unique id, ``name[group]``; the stored verdicts are keyed by it.
        name: short name, e.g. ``depth-chaotic-without-skips``.
        statement: the paper's claim in words, with the condition tested.
        group: which slice of the matrix (e.g. ``bs128``).
        per_pair: one dict of numbers per direction pair (or a single one), each with ``holds``.
        comparison_holds: the condition held on every pair, regardless of convergence.
        verdict: ``holds``, ``fails`` or ``inconclusive``.
        nets: config_id -> final train_loss, train_acc, test_acc and converged, for every net involved.
    """

    name: str
    statement: str
    group: str
    per_pair: tuple[dict[str, float], ...]
    comparison_holds: bool
    verdict: str
    nets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name}[{self.group}]"

    @property
    def numbers(self) -> dict[str, float]:
        """The first pair's numbers (all pairs: :attr:`per_pair`)."""
        return dict(self.per_pair[0]) if self.per_pair else {}


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
    return [record["metrics"]]


def curvature_of(record: Mapping[str, Any]) -> Mapping[str, float]:
    return record.get("curvature") or record.get("metrics", {})


def _claim(name: str, statement: str, group: str, per_pair: Sequence[dict[str, float]],
           nets: Sequence[Mapping[str, Any]]) -> Claim:
    info = {r["config_id"]: {"train_loss": r["final"]["train_loss"], "train_acc": r["final"]["train_acc"],
                             "test_acc": r["final"].get("test_acc", math.nan), "converged": bool(r["converged"])}
            for r in nets}
    holds = bool(per_pair) and all(bool(p["holds"]) for p in per_pair)
    all_converged = all(v["converged"] for v in info.values())
    verdict = (HOLDS if holds else FAILS) if all_converged else INCONCLUSIVE
    return Claim(name, statement, group, tuple(dict(p) for p in per_pair), holds, verdict, info)


def _per_pair(records: Sequence[Mapping[str, Any]],
              judge: Callable[[list[Mapping[str, float]]], dict[str, float]]) -> list[dict[str, float]]:
    """Apply ``judge`` to the k-th pair of every record, for each k all records have."""
    n = min(len(pairs_of(r)) for r in records)
    return [judge([pairs_of(r)[k] for r in records]) for k in range(n)]


def _find(records: Sequence[Mapping[str, Any]], *, depth: int, shortcut: bool, batch_size: int,
          optimizer: str = "adam", weight_decay: float = 0.0, width: int = 1) -> Mapping[str, Any] | None:
    for r in records:
        c = r["config"]
        if (c.get("arch", "resnet"), c["depth"], c["shortcut"], c["batch_size"], c.get("optimizer", "adam"),
                c.get("weight_decay", 0.0), c.get("width", 1)) == ("resnet", depth, shortcut, batch_size, optimizer,
                                                                    weight_decay, width):
            return r
    return None


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


def evaluate_claims(records: Sequence[Mapping[str, Any]],
                    eig_maps: Mapping[str, Mapping[str, float]] | None = None) -> list[Claim]:
    """Every claim that the given nets allow (a claim whose nets are absent is not listed).

    Args:
        records: one per net (see the module docstring).
        eig_maps: config_id -> :func:`lossbench.metrics.eig_ratio_summary` of its eigen-ratio map
            (also read from a record's ``eig_map``).
    """
    eig_maps = dict(eig_maps or {})
    for r in records:
        if r.get("eig_map"):
            eig_maps.setdefault(r["config_id"], r["eig_map"])
    claims: list[Claim] = []
    seed = [r for r in records if r["config"].get("optimizer", "adam") == "adam" and r["config"].get("width", 1) == 1]
    batch_sizes = sorted({r["config"]["batch_size"] for r in seed})
    depths = sorted({r["config"]["depth"] for r in seed})
    for bs in batch_sizes:
        claims += _depth_claims(seed, bs, depths)
        claims += _skip_claims(seed, bs, eig_maps)
    claims += _large_batch_claims(seed, batch_sizes, depths)
    claims += _filter_normalisation_claims(records)
    claims += _correlation_claims(records)
    claims += _pca_claims(records)
    return claims


def _depth_claims(records, bs: int, depths: list[int]) -> list[Claim]:
    out = []
    for shallow, deep in zip(depths, depths[1:]):
        a = _find(records, depth=shallow, shortcut=False, batch_size=bs)
        b = _find(records, depth=deep, shortcut=False, batch_size=bs)
        if not (a and b):
            continue
        ca, cb = curvature_of(a), curvature_of(b)

        def judge(p, ca=ca, cb=cb, shallow=shallow, deep=deep):
            nc_a, nc_b = p[0]["nonconvex_fraction"], p[1]["nonconvex_fraction"]
            ra, rb = ca.get("eig_ratio_center", math.nan), cb.get("eig_ratio_center", math.nan)
            return {f"nonconvex_fraction {deep}-noshort": nc_b, f"nonconvex_fraction {shallow}-noshort": nc_a,
                    f"eig_ratio_center {deep}-noshort": rb, f"eig_ratio_center {shallow}-noshort": ra,
                    "holds": float(nc_b > nc_a and rb > ra)}

        out.append(_claim(
            "depth-chaotic-without-skips",
            f"without skip connections ResNet-{deep} is less convex than ResNet-{shallow}: a larger non-convex "
            f"fraction of its filter-normalised surface and a larger |lambda_min / lambda_max| at the minimum",
            f"bs{bs}", _per_pair([a, b], judge), [a, b]))
    return out


def _skip_claims(records, bs: int, eig_maps) -> list[Claim]:
    out = []
    s20 = _find(records, depth=20, shortcut=True, batch_size=bs)
    for deep in (56, 110):
        s, n = _find(records, depth=deep, shortcut=True, batch_size=bs), _find(records, depth=deep, shortcut=False, batch_size=bs)
        if s and n and s20:
            def judge(p, deep=deep):
                nc20, ncs, ncn = p[0]["nonconvex_fraction"], p[1]["nonconvex_fraction"], p[2]["nonconvex_fraction"]
                # "about as convex as ResNet-20": the depth effect with skips is smaller than the skip
                # effect at this depth, and the net without skips is the less convex one
                return {f"nonconvex_fraction {deep}": ncs, "nonconvex_fraction 20": nc20,
                        f"nonconvex_fraction {deep}-noshort": ncn,
                        "holds": float(ncn > ncs and abs(ncs - nc20) < ncn - ncs)}

            out.append(_claim(
                "skips-prevent-chaos",
                f"with skip connections ResNet-{deep} is about as convex as ResNet-20 (|difference of non-convex "
                f"fractions| smaller than the gap to ResNet-{deep} without skips), and far more convex than "
                f"ResNet-{deep} without them", f"bs{bs}", _per_pair([s20, s, n], judge), [s20, s, n]))
        if s and n:
            cs, cn = curvature_of(s), curvature_of(n)
            maps = (eig_maps.get(s["config_id"]), eig_maps.get(n["config_id"]))
            numbers = {f"eig_ratio_center {deep}-noshort": cn.get("eig_ratio_center", math.nan),
                       f"eig_ratio_center {deep}": cs.get("eig_ratio_center", math.nan)}
            holds = numbers[f"eig_ratio_center {deep}-noshort"] > numbers[f"eig_ratio_center {deep}"]
            if maps[0] and maps[1]:
                numbers[f"eig_ratio_mean map {deep}-noshort"] = maps[1]["eig_ratio_mean"]
                numbers[f"eig_ratio_mean map {deep}"] = maps[0]["eig_ratio_mean"]
                holds = holds and maps[1]["eig_ratio_mean"] > maps[0]["eig_ratio_mean"]
            out.append(_claim(
                "larger-eig-ratio-without-skips",
                f"without skip connections ResNet-{deep} has larger Hessian eigen ratios |lambda_min / lambda_max|: "
                "at the minimum and, where mapped, averaged over the eigen-ratio map", f"bs{bs}",
                [{**numbers, "holds": float(holds)}], [n, s]))
    return out


def _large_batch_claims(records, batch_sizes: list[int], depths: list[int]) -> list[Claim]:
    out = []
    if len(batch_sizes) < 2:
        return out
    small, large = batch_sizes[0], batch_sizes[-1]
    for depth in depths:
        for shortcut in (True, False):
            a = _find(records, depth=depth, shortcut=shortcut, batch_size=small)
            b = _find(records, depth=depth, shortcut=shortcut, batch_size=large)
            if not (a and b):
                continue

            def judge(p):
                return {f"curv_max bs{large}": p[1]["curv_max"], f"curv_max bs{small}": p[0]["curv_max"],
                        f"sharpness_0.5 bs{large}": p[1]["sharpness_0.5"], f"sharpness_0.5 bs{small}": p[0]["sharpness_0.5"],
                        "holds": float(p[1]["curv_max"] > p[0]["curv_max"] and p[1]["sharpness_0.5"] > p[0]["sharpness_0.5"])}

            out.append(_claim(
                "large-batch-sharper",
                f"batch {large} finds a sharper minimum than batch {small} on filter-normalised directions "
                "(larger curv_max and 0.5-sharpness)", f"resnet{depth}{'' if shortcut else '-noshort'}",
                _per_pair([a, b], judge), [a, b]))
    return out


def _line_curvatures(record, norm: str) -> list[float]:
    return [float(m["curv"]) for m in record.get("lines", {}).get(norm, [])]


def _filter_normalisation_claims(records) -> list[Claim]:
    """Paper section 4 (Figures 2-3): with filter-normalised directions the flatter minimiser is the one
    that generalises better, at both weight decays; without normalisation the apparent ordering of
    small- and large-batch minimisers can flip with weight decay."""
    out = []
    sgd = [r for r in records if r["config"].get("optimizer", "adam") == "sgd" and r.get("lines")]
    decays = sorted({r["config"]["weight_decay"] for r in sgd})
    sizes = sorted({r["config"]["batch_size"] for r in sgd})
    if len(sizes) < 2:
        return out
    small, large = sizes[0], sizes[-1]
    order_none: dict[float, list[bool]] = {}
    pairs_none: dict[float, tuple] = {}
    for wd in decays:
        a = _find(sgd, depth=20, shortcut=True, batch_size=small, optimizer="sgd", weight_decay=wd)
        b = _find(sgd, depth=20, shortcut=True, batch_size=large, optimizer="sgd", weight_decay=wd)
        if not (a and b):
            continue
        err_a, err_b = 1 - a["final"]["test_acc"], 1 - b["final"]["test_acc"]
        ka, kb = _line_curvatures(a, "filter"), _line_curvatures(b, "filter")
        per = []
        for k in range(min(len(ka), len(kb))):
            # the lower-error net must be the flatter one (a tie in either is not a "holds")
            holds = (err_a < err_b and ka[k] < kb[k]) or (err_b < err_a and kb[k] < ka[k])
            per.append({f"test error bs{small}": err_a, f"test error bs{large}": err_b,
                        f"curv (filter) bs{small}": ka[k], f"curv (filter) bs{large}": kb[k], "holds": float(holds)})
        out.append(_claim(
            "filter-normalised-sharpness-tracks-error",
            f"with filter-normalised directions the minimiser with the lower test error is the flatter one "
            f"(1D curvature at the minimum), batch {small} against {large}", f"sgd-wd{wd:g}", per, [a, b]))
        na, nb = _line_curvatures(a, "none"), _line_curvatures(b, "none")
        order_none[wd] = [na[k] < nb[k] for k in range(min(len(na), len(nb)))]
        pairs_none[wd] = (a, b, na, nb)
    if len(order_none) == 2:
        (wd0, o0), (wd1, o1) = sorted(order_none.items())
        per = []
        for k in range(min(len(o0), len(o1))):
            a0, b0, na0, nb0 = pairs_none[wd0]
            a1, b1, na1, nb1 = pairs_none[wd1]
            per.append({f"curv (none) bs{small} wd{wd0:g}": na0[k], f"curv (none) bs{large} wd{wd0:g}": nb0[k],
                        f"curv (none) bs{small} wd{wd1:g}": na1[k], f"curv (none) bs{large} wd{wd1:g}": nb1[k],
                        "holds": float(o0[k] != o1[k])})
        out.append(_claim(
            "unnormalised-ordering-flips-with-weight-decay",
            f"without normalisation the flatter-looking of the batch {small} and {large} minimisers changes "
            "with weight decay (the paper's Figure 2: unnormalised plots mislead)", "sgd",
            per, [pairs_none[wd0][0], pairs_none[wd0][1], pairs_none[wd1][0], pairs_none[wd1][1]]))
    return out


SHARPNESS_METRICS = ("curv_max", "sharpness_0.5")


def _correlation_claims(records) -> list[Claim]:
    """Sharpness against test error over every converged net with 2D surfaces."""
    nets = [r for r in records if r["converged"] and (r.get("pairs") or r.get("metrics"))]
    if len(nets) < 4:
        return []
    err = [1 - r["final"]["test_acc"] for r in nets]
    per = []
    n_pairs = min(len(pairs_of(r)) for r in nets)
    for k in range(n_pairs):
        numbers = {f"spearman {m}": spearman([pairs_of(r)[k][m] for r in nets], err) for m in SHARPNESS_METRICS}
        numbers["nets"] = float(len(nets))
        numbers["holds"] = float(numbers["spearman curv_max"] > 0)
        per.append(numbers)
    curv = [curvature_of(r).get("eig_max", math.nan) for r in nets]
    trace = [curvature_of(r).get("trace", math.nan) for r in nets]
    for p in per:
        p["spearman eig_max"] = spearman(curv, err)
        p["spearman trace"] = spearman(trace, err)
    return [_claim(
        "sharpness-tracks-test-error",
        "over all converged nets, sharper minima (curv_max of the filter-normalised surface) have higher test "
        "error: a positive Spearman rank correlation (other sharpness measures reported)", "all-converged",
        per, nets)]


def _pca_claims(records) -> list[Claim]:
    out = []
    lo, hi = PCA_SHARE_RANGE
    for r in records:
        pca = r.get("pca")
        if not pca:
            continue
        share, rand = pca["share"], pca["random_share"]
        holds = lo <= share <= hi and rand <= RANDOM_SHARE_MAX and pca["checkpoints"] >= 20
        out.append(_claim(
            "pca-explains-path",
            f"the top two PCA directions explain {lo:.0%}-{hi:.0%} of the training path's variance "
            f"(>= 20 checkpoints), two random filter-normalised directions at most {RANDOM_SHARE_MAX:.0%}",
            r["config_id"],
            [{"share top-2 PCA": share, "share random": rand, "checkpoints": float(pca["checkpoints"]),
              "holds": float(holds)}], [r]))
    return out
