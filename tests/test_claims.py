from lossbench.claims import evaluate_claims


def record(depth, shortcut, bs, *, nc, rough, radius, curv, sharp, acc=0.99, pca=(0.6, 0.2)):
    cid = f"resnet{depth}{'' if shortcut else '-noshort'}-bs{bs}-s0"
    return {
        "config_id": cid,
        "config": {"arch": "resnet", "depth": depth, "shortcut": shortcut, "batch_size": bs},
        "final": {"train_loss": 0.05, "train_acc": acc},
        "converged": acc >= 0.9,
        "metrics": {"nonconvex_fraction": nc, "roughness": rough, "local_minima": 0.0, "basin_radius": radius,
                    "curv_max": curv, "sharpness_0.5": sharp, "pca_var_1": pca[0], "pca_var_2": pca[1]},
    }


def paperlike():
    """A matrix where every claim of the paper holds."""
    out = []
    for bs, scale in ((128, 1.0), (2000, 3.0)):
        out += [
            record(20, True, bs, nc=0.0, rough=1.0, radius=0.30, curv=2 * scale, sharp=10 * scale),
            record(20, False, bs, nc=0.1, rough=1.1, radius=0.25, curv=3 * scale, sharp=12 * scale),
            record(56, True, bs, nc=0.0, rough=1.0, radius=0.28, curv=2.5 * scale, sharp=11 * scale),
            record(56, False, bs, nc=0.5, rough=2.0, radius=0.10, curv=9 * scale, sharp=40 * scale),
        ]
    return out


def by_name(claims, name):
    return [c for c in claims if c.name == name]


def test_all_claims_hold_on_a_paperlike_matrix():
    eig = {"resnet56-bs128-s0": {"eig_ratio_mean": 0.05, "eig_ratio_above_0.1": 0.0},
           "resnet56-noshort-bs128-s0": {"eig_ratio_mean": 0.4, "eig_ratio_above_0.1": 0.8}}
    claims = evaluate_claims(paperlike(), eig_maps=eig)
    names = {c.name for c in claims}
    assert names == {"noshort-less-convex", "gap-grows-with-depth", "shortcut-basin-width-stable",
                     "large-batch-sharper", "pca-explains-path", "noshort-larger-eig-ratio"}
    assert all(c.verdict == "holds" for c in claims), [(c.name, c.group, c.numbers) for c in claims if c.verdict != "holds"]
    assert len(by_name(claims, "large-batch-sharper")) == 4


def test_a_failing_claim_is_reported_with_its_numbers():
    recs = paperlike()
    for r in recs:
        if r["config_id"] == "resnet56-noshort-bs128-s0":
            r["metrics"]["nonconvex_fraction"] = 0.0
    c = next(c for c in by_name(evaluate_claims(recs), "noshort-less-convex") if c.group == "bs128")
    assert c.verdict == "fails" and not c.comparison_holds
    assert c.numbers["nonconvex_fraction noshort"] == 0.0


def test_unconverged_nets_make_a_claim_inconclusive_not_hidden():
    recs = paperlike()
    for r in recs:
        if r["config_id"] == "resnet56-noshort-bs2000-s0":
            r["final"]["train_acc"], r["converged"] = 0.1, False
    c = next(c for c in by_name(evaluate_claims(recs), "noshort-less-convex") if c.group == "bs2000")
    assert c.verdict == "inconclusive" and c.comparison_holds
    assert c.nets["resnet56-noshort-bs2000-s0"] == {"train_loss": 0.05, "train_acc": 0.1, "converged": False}


def test_basin_width_claim_uses_relative_difference():
    recs = paperlike()
    for r in recs:
        if r["config_id"] == "resnet56-bs128-s0":
            r["metrics"]["basin_radius"] = 0.1  # 0.30 vs 0.10: not "about the same"
    c = next(c for c in by_name(evaluate_claims(recs), "shortcut-basin-width-stable") if c.group == "bs128")
    assert c.verdict == "fails" and abs(c.numbers["relative difference"] - 1.0) < 1e-9
