"""The paper's qualitative claims as checks over a matrix of metrics (plain dicts in, verdicts out).

Each record is what :meth:`lossbench.reproduce.Reproduction.to_json` gives: ``config`` (depth,
shortcut, batch_size, ...), ``final`` (train_loss, train_acc, ...), ``converged`` and ``metrics``.
A claim compares nets; it only means something when every net involved reached a minimum, so each
verdict carries those nets' final train loss and accuracy, and is "inconclusive" when one has not
converged (the numbers and the raw comparison are still reported, never hidden).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: "about the same width": relative difference of the 0.1-level basin radius at most this.
SAME_WIDTH_REL = 0.25


@dataclass(frozen=True)
class Claim:
    """One claim's verdict.

    Attributes:
        name: short key, e.g. ``noshort-less-convex``.
        statement: the paper's claim in words, with the condition tested.
        group: which slice of the matrix (e.g. ``bs128``).
        comparison_holds: the inequality on the numbers, regardless of convergence.
        verdict: ``holds``, ``fails`` or ``inconclusive`` (a net had not reached a minimum).
        numbers: the metric values compared.
        nets: config_id -> final train_loss, train_acc and converged, for every net involved.
    """

    name: str
    statement: str
    group: str
    comparison_holds: bool
    verdict: str
    numbers: dict[str, float]
    nets: dict[str, dict[str, Any]] = field(default_factory=dict)


def _find(records: Sequence[Mapping[str, Any]], depth: int, shortcut: bool, batch_size: int) -> Mapping[str, Any] | None:
    for r in records:
        c = r["config"]
        if (c["arch"], c["depth"], c["shortcut"], c["batch_size"]) == ("resnet", depth, shortcut, batch_size):
            return r
    return None


def _claim(name: str, statement: str, group: str, holds: bool, numbers: dict[str, float],
           nets: Sequence[Mapping[str, Any]]) -> Claim:
    info = {r["config_id"]: {"train_loss": r["final"]["train_loss"], "train_acc": r["final"]["train_acc"],
                             "converged": bool(r["converged"])} for r in nets}
    all_converged = all(v["converged"] for v in info.values())
    verdict = ("holds" if holds else "fails") if all_converged else "inconclusive"
    return Claim(name, statement, group, bool(holds), verdict, numbers, info)


#: The paper reports that the top two PCA directions explain 40-90 % of the path's variance.
PCA_SHARE = 0.4


def evaluate_claims(records: Sequence[Mapping[str, Any]],
                    eig_maps: Mapping[str, Mapping[str, float]] | None = None) -> list[Claim]:
    """Every claim that the given matrix has the nets for.

    Args:
        records: one per config (see the module docstring).
        eig_maps: config_id -> :func:`lossbench.metrics.eig_ratio_summary` of its eigen-ratio map.
    """
    claims: list[Claim] = []
    eig_maps = eig_maps or {}
    for r in records:
        m = r["metrics"]
        if "pca_var_1" in m and "pca_var_2" in m:
            share = m["pca_var_1"] + m["pca_var_2"]
            claims.append(_claim(
                "pca-explains-path",
                f"the top two PCA directions explain a large share of the training path's variance "
                f"(at least {PCA_SHARE:.0%}; the paper reports 40-90 %)", r["config_id"], share >= PCA_SHARE,
                {"pca_var_1": m["pca_var_1"], "pca_var_2": m["pca_var_2"], "share": share}, [r]))
    batch_sizes = sorted({r["config"]["batch_size"] for r in records})
    for bs in batch_sizes:
        s56, n56 = _find(records, 56, True, bs), _find(records, 56, False, bs)
        s20, n20 = _find(records, 20, True, bs), _find(records, 20, False, bs)
        group = f"bs{bs}"
        if s56 and n56:
            ms, mn = s56["metrics"], n56["metrics"]
            holds = mn["nonconvex_fraction"] > ms["nonconvex_fraction"] and mn["roughness"] > ms["roughness"]
            claims.append(_claim(
                "noshort-less-convex",
                "ResNet-56 without shortcuts is less convex than with them "
                "(larger non-convex fraction and roughness)", group, holds,
                {"nonconvex_fraction noshort": mn["nonconvex_fraction"], "nonconvex_fraction short": ms["nonconvex_fraction"],
                 "roughness noshort": mn["roughness"], "roughness short": ms["roughness"],
                 "local_minima noshort": mn["local_minima"], "local_minima short": ms["local_minima"]},
                [n56, s56]))
        if s56 and n56 and s56["config_id"] in eig_maps and n56["config_id"] in eig_maps:
            es, en = eig_maps[s56["config_id"]], eig_maps[n56["config_id"]]
            claims.append(_claim(
                "noshort-larger-eig-ratio",
                "near the minimum, ResNet-56 without shortcuts has larger Hessian eigen ratios "
                "|lambda_min / lambda_max| than with them (mean over the map)", group,
                en["eig_ratio_mean"] > es["eig_ratio_mean"],
                {"eig_ratio_mean noshort": en["eig_ratio_mean"], "eig_ratio_mean short": es["eig_ratio_mean"],
                 "eig_ratio_above_0.1 noshort": en["eig_ratio_above_0.1"],
                 "eig_ratio_above_0.1 short": es["eig_ratio_above_0.1"]}, [n56, s56]))
        if s56 and n56 and s20 and n20:
            gap56 = n56["metrics"]["nonconvex_fraction"] - s56["metrics"]["nonconvex_fraction"]
            gap20 = n20["metrics"]["nonconvex_fraction"] - s20["metrics"]["nonconvex_fraction"]
            claims.append(_claim(
                "gap-grows-with-depth",
                "the convexity gap between no-shortcut and shortcut nets grows from depth 20 to 56 "
                "(difference of non-convex fractions)", group, gap56 > gap20,
                {"gap depth 56": gap56, "gap depth 20": gap20}, [n56, s56, n20, s20]))
        if s56 and s20:
            r56, r20 = s56["metrics"]["basin_radius"], s20["metrics"]["basin_radius"]
            rel = abs(r56 - r20) / max((r56 + r20) / 2, 1e-12)
            claims.append(_claim(
                "shortcut-basin-width-stable",
                f"with shortcuts the 0.1-level basin has about the same width at depth 20 and 56 "
                f"(relative difference of mean radius <= {SAME_WIDTH_REL:g})", group, rel <= SAME_WIDTH_REL,
                {"basin_radius depth 56": r56, "basin_radius depth 20": r20, "relative difference": rel},
                [s56, s20]))
    if len(batch_sizes) >= 2:
        small, large = batch_sizes[0], batch_sizes[-1]
        for depth in sorted({r["config"]["depth"] for r in records}):
            for shortcut in (True, False):
                a, b = _find(records, depth, shortcut, small), _find(records, depth, shortcut, large)
                if not (a and b):
                    continue
                ma, mb = a["metrics"], b["metrics"]
                holds = mb["curv_max"] > ma["curv_max"] and mb["sharpness_0.5"] > ma["sharpness_0.5"]
                claims.append(_claim(
                    "large-batch-sharper",
                    f"batch {large} finds a sharper minimum than batch {small} on filter-normalised directions "
                    "(larger curv_max and 0.5-sharpness)", f"resnet{depth}{'' if shortcut else '-noshort'}", holds,
                    {f"curv_max bs{large}": mb["curv_max"], f"curv_max bs{small}": ma["curv_max"],
                     f"sharpness_0.5 bs{large}": mb["sharpness_0.5"], f"sharpness_0.5 bs{small}": ma["sharpness_0.5"]},
                    [b, a]))
    return claims
