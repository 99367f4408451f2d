import copy
import math

import pytest

from lossbench.claims import FAILS, HOLDS, INCONCLUSIVE, evaluate_claims, spearman


def record(depth, shortcut, bs, *, nc, curv, sharp, ratio, test_acc, acc=0.99, pairs=3, optimizer="adam",
           wd=0.0, lines=None, pca=None):
    recipe = ("-sgd" if optimizer == "sgd" else "") + (f"-wd{wd:g}" if wd else "")
    cid = f"resnet{depth}{'' if shortcut else '-noshort'}{recipe}-bs{bs}-s0"
    pair = {"nonconvex_fraction": nc, "curv_max": curv, "sharpness_0.5": sharp}
    out = {
        "config_id": cid,
        "config": {"arch": "resnet", "depth": depth, "shortcut": shortcut, "batch_size": bs, "optimizer": optimizer,
                   "weight_decay": wd, "width": 1},
        "final": {"train_loss": 0.05, "train_acc": acc, "test_acc": test_acc},
        "converged": acc >= 0.9,
        "pairs": [dict(pair) for _ in range(pairs)],
        "curvature": {"eig_max": curv * 10, "eig_ratio_center": ratio, "trace": curv * 100},
    }
    if lines:
        out["lines"] = lines
    if pca:
        out["pca"] = pca
    return out


def lines(filter_curv, none_curv):
    return {"filter": [{"curv": filter_curv}] * 3, "none": [{"curv": none_curv}] * 3}


def paperlike():
    """A matrix where every claim of the paper holds."""
    out = []
    for bs, s in ((128, 1.0), (2000, 3.0)):
        out += [
            record(20, True, bs, nc=0.02, curv=2 * s, sharp=10 * s, ratio=0.01, test_acc=0.95 - 0.01 * s),
            record(20, False, bs, nc=0.1, curv=3 * s, sharp=12 * s, ratio=0.05, test_acc=0.94 - 0.01 * s),
            record(56, True, bs, nc=0.03, curv=2.5 * s, sharp=11 * s, ratio=0.02, test_acc=0.945 - 0.01 * s),
            record(56, False, bs, nc=0.5, curv=9 * s, sharp=40 * s, ratio=0.4, test_acc=0.90 - 0.01 * s),
        ]
    pca = {"share": 0.7, "random_share": 1e-4, "checkpoints": 21}
    out[0]["pca"] = pca
    # the filter-normalisation experiment: the small batch generalises better and is flatter with
    # filter normalisation; without it, weight decay makes the small-batch net look sharper
    out += [
        record(20, True, 128, nc=0.0, curv=1, sharp=1, ratio=0.0, test_acc=0.97, optimizer="sgd", lines=lines(1.0, 5.0)),
        record(20, True, 2000, nc=0.0, curv=1, sharp=1, ratio=0.0, test_acc=0.93, optimizer="sgd", lines=lines(3.0, 9.0)),
        record(20, True, 128, nc=0.0, curv=1, sharp=1, ratio=0.0, test_acc=0.975, optimizer="sgd", wd=5e-4,
               lines=lines(1.5, 50.0)),
        record(20, True, 2000, nc=0.0, curv=1, sharp=1, ratio=0.0, test_acc=0.94, optimizer="sgd", wd=5e-4,
               lines=lines(4.0, 20.0)),
    ]
    return out


EIG = {"resnet56-bs128-s0": {"eig_ratio_mean": 0.05}, "resnet56-noshort-bs128-s0": {"eig_ratio_mean": 0.4}}


def by_key(claims):
    return {c.key: c for c in claims}


def test_all_claims_hold_on_a_paperlike_matrix():
    claims = evaluate_claims(paperlike(), eig_maps=EIG)
    names = {c.name for c in claims}
    assert names == {"depth-chaotic-without-skips", "skips-prevent-chaos", "larger-eig-ratio-without-skips",
                     "large-batch-sharper", "filter-normalised-sharpness-tracks-error",
                     "unnormalised-ordering-flips-with-weight-decay", "sharpness-tracks-test-error",
                     "pca-explains-path"}
    bad = [(c.key, c.per_pair) for c in claims if c.verdict != HOLDS]
    assert not bad
    assert len([c for c in claims if c.name == "large-batch-sharper"]) == 4
    assert all(len(c.per_pair) == 3 for c in claims if c.name == "large-batch-sharper")


def test_a_claim_must_hold_on_every_direction_pair():
    recs = paperlike()
    r = next(r for r in recs if r["config_id"] == "resnet56-noshort-bs128-s0")
    r["pairs"][2]["nonconvex_fraction"] = 0.05  # pair 2 says the deep no-skip net is as convex
    c = by_key(evaluate_claims(recs, eig_maps=EIG))["depth-chaotic-without-skips[bs128]"]
    assert c.verdict == FAILS and [p["holds"] for p in c.per_pair] == [1.0, 1.0, 0.0]
    assert c.per_pair[2]["nonconvex_fraction 56-noshort"] == 0.05


def test_a_tie_is_not_a_hold():
    recs = paperlike()
    for r in recs:
        if r["config_id"] in ("resnet20-noshort-bs128-s0", "resnet56-noshort-bs128-s0"):
            for p in r["pairs"]:
                p["nonconvex_fraction"] = 0.2
    assert by_key(evaluate_claims(recs, eig_maps=EIG))["depth-chaotic-without-skips[bs128]"].verdict == FAILS


def test_unconverged_nets_make_a_claim_inconclusive_not_hidden():
    recs = paperlike()
    r = next(r for r in recs if r["config_id"] == "resnet56-noshort-bs2000-s0")
    r["final"]["train_acc"], r["converged"] = 0.1, False
    c = by_key(evaluate_claims(recs, eig_maps=EIG))["depth-chaotic-without-skips[bs2000]"]
    assert c.verdict == INCONCLUSIVE and c.comparison_holds
    assert c.nets["resnet56-noshort-bs2000-s0"]["converged"] is False


def test_filter_normalisation_claim_follows_test_error():
    recs = paperlike()
    r = next(r for r in recs if r["config_id"] == "resnet20-sgd-bs2000-s0")
    r["lines"] = lines(0.5, 9.0)  # the worse net now looks flatter under filter normalisation
    c = by_key(evaluate_claims(recs))["filter-normalised-sharpness-tracks-error[sgd-wd0]"]
    assert c.verdict == FAILS


def test_unnormalised_flip_is_a_claim_that_can_fail():
    recs = paperlike()
    r = next(r for r in recs if r["config_id"] == "resnet20-sgd-wd0.0005-bs128-s0")
    r["lines"] = lines(1.5, 10.0)  # no flip: small batch flatter-looking at both decays
    assert by_key(evaluate_claims(recs))["unnormalised-ordering-flips-with-weight-decay[sgd]"].verdict == FAILS


def test_pca_claim_needs_share_in_range_and_random_near_zero():
    recs = paperlike()
    recs[0]["pca"] = {"share": 0.95, "random_share": 1e-4, "checkpoints": 21}
    assert by_key(evaluate_claims(recs))["pca-explains-path[resnet20-bs128-s0]"].verdict == FAILS
    recs[0]["pca"] = {"share": 0.7, "random_share": 0.2, "checkpoints": 21}
    assert by_key(evaluate_claims(recs))["pca-explains-path[resnet20-bs128-s0]"].verdict == FAILS
    recs[0]["pca"] = {"share": 0.7, "random_share": 1e-4, "checkpoints": 7}
    assert by_key(evaluate_claims(recs))["pca-explains-path[resnet20-bs128-s0]"].verdict == FAILS


def test_correlation_claim_fails_when_sharper_nets_generalise_better():
    recs = copy.deepcopy(paperlike())
    for r in recs:
        r["final"]["test_acc"] = 1 - r["final"]["test_acc"]  # reverse the error ordering
    c = by_key(evaluate_claims(recs))["sharpness-tracks-test-error[all-converged]"]
    assert c.verdict == FAILS and c.per_pair[0]["spearman curv_max"] < 0


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2])) and math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_nets_that_ran_and_recorded_nothing_fail_the_claims_instead_of_skipping_them():
    """A partial run (-k) skips the claims; a net that was selected and broke before its metrics (a
    method that makes its surface non-finite, say) fails them: the claims test cannot go quiet."""
    from lossbench.claims import missing_nets

    everything = ["a", "b", "c"]
    assert missing_nets(everything, everything, everything) is None
    assert missing_nets(everything, ["a"], ["a"])[0] == "skip"
    action, why = missing_nets(everything, ["a", "b"], everything)
    assert action == "fail" and "['c']" in why
