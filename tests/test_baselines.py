import json

import numpy as np
import pytest

from lossbench.baselines import (
    BASELINE_FORMAT,
    SAFETY_FACTOR,
    BaselineFileError,
    check,
    compare,
    floor_tolerance,
    make_baseline,
    metric_kind,
    recompute_tolerances,
    round_sig,
    spread_stats,
)

SOURCE = {"commit": "abc1234", "torch": "2.x", "device": "cpu", "date": "2026-01-01"}
METRICS = {"curv_max": 2.0, "loss_center": 0.5, "local_minima": 0.0, "nonconvex_fraction": 0.1}


def run(tmp_path, obtained, **kw):
    return check(tmp_path / "ci" / "cfg.json", obtained, config_id="cfg", scale="ci", source=SOURCE, **kw)


def write(tmp_path, doc):
    path = tmp_path / "ci" / "cfg.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_missing_baseline_is_created_and_reported(tmp_path):
    out = run(tmp_path, METRICS, config_hash="h1", weights_sha256="w1")
    assert out.status == "created" and "review and commit" in out.message
    doc = json.loads((tmp_path / "ci" / "cfg.json").read_text())
    assert doc["format"] == BASELINE_FORMAT and doc["config_hash"] == "h1"
    entry = doc["metrics"]["curv_max"]
    assert entry["value"] == 2.0 and floor_tolerance("curv_max", 2.0) <= entry["tol"] <= 1.01 * floor_tolerance("curv_max", 2.0)
    assert doc["source"] == {**SOURCE, "weights_sha256": "w1"}
    text = (tmp_path / "ci" / "cfg.json").read_text()
    assert text.endswith("}\n") and text == json.dumps(doc, indent=2, sort_keys=True) + "\n"


def test_within_tolerance_passes_and_one_percent_fails(tmp_path):
    run(tmp_path, METRICS)
    tol = floor_tolerance("curv_max", 2.0)
    assert run(tmp_path, {**METRICS, "curv_max": 2.0 + 0.5 * tol}).status == "passed"
    assert run(tmp_path, {**METRICS, "curv_max": 2.0 * 1.01}).status == "failed"


def test_every_metric_is_compared_before_failing(tmp_path):
    run(tmp_path, METRICS)
    out = run(tmp_path, {**METRICS, "curv_max": 3.0, "local_minima": 2.0})
    assert out.status == "failed"
    assert "2 of 4 metrics differ" in out.message and "tier: tol" in out.message
    lines = out.message.splitlines()
    assert any(l.strip().startswith("FAIL curv_max") and "expected 2 ± 2.0" in l and "obtained 3" in l
               and "rel diff 5.00e-01" in l for l in lines)
    assert any(l.strip().startswith("FAIL local_minima") for l in lines)
    assert any(l.strip().startswith("ok   loss_center") for l in lines)
    obtained = json.loads((tmp_path / "ci" / "cfg.obtained.json").read_text())
    assert obtained["metrics"]["curv_max"]["value"] == 3.0


def test_regen_rewrites_keeps_tolerances_and_spread_and_still_fails(tmp_path):
    run(tmp_path, METRICS)
    path = tmp_path / "ci" / "cfg.json"
    doc = json.loads(path.read_text())
    doc["metrics"]["curv_max"]["tol"] = 0.123  # a measured tolerance survives regeneration
    doc["spread"] = {"seeds": [0, 1, 2], "metrics": {"curv_max": {"sd": 1.0, "n": 3, "min": 1.0, "max": 3.0}}}
    path.write_text(json.dumps(doc))
    out = run(tmp_path, {**METRICS, "curv_max": 9.0}, regen=True)
    assert out.status == "updated"
    new = json.loads(path.read_text())
    assert new["metrics"]["curv_max"] == {"value": 9.0, "tol": 0.123} and new["spread"] == doc["spread"]
    assert run(tmp_path, {**METRICS, "curv_max": 9.0}).status == "passed"
    assert run(tmp_path, {**METRICS, "curv_max": 1.0}, regen_all=True).status == "passed"


def test_new_or_missing_metrics_fail(tmp_path):
    run(tmp_path, METRICS)
    out = run(tmp_path, {**METRICS, "roughness": 1.0})
    assert out.status == "failed" and "expected missing" in out.message
    less = dict(METRICS)
    del less["curv_max"]
    assert run(tmp_path, less).status == "failed"


def test_a_changed_recipe_fails_and_says_regenerate(tmp_path):
    run(tmp_path, METRICS, config_hash="a" * 64)
    out = run(tmp_path, METRICS, config_hash="b" * 64)
    assert out.status == "failed" and "the recipe of cfg changed since its baseline" in out.message
    assert "regenerate" in out.message
    assert run(tmp_path, METRICS, config_hash="b" * 64, regen_all=True).status == "passed"
    assert json.loads((tmp_path / "ci" / "cfg.json").read_text())["config_hash"] == "b" * 64


HERE = {"cpu_isa": "avx512", "torch": "2.x"}
THERE = {"cpu_isa": "avx2", "torch": "2.x"}


def _baseline_with_spread_made_here(tmp_path):
    """A baseline of weights "same" made on platform HERE, with curv_max's spread 2 +- 0.5 (1.5 to 2.5)."""
    run(tmp_path, METRICS, weights_sha256="same")
    path = tmp_path / "ci" / "cfg.json"
    doc = json.loads(path.read_text())
    doc["spread"] = {"seeds": [0, 1, 2], "metrics": {"curv_max": {"sd": 0.5, "n": 3, "min": 1.5, "max": 2.5}}}
    doc["source"]["platform"] = HERE
    path.write_text(json.dumps(doc))


def test_other_weights_are_compared_at_the_spread_band(tmp_path):
    _baseline_with_spread_made_here(tmp_path)
    moved = {**METRICS, "curv_max": 3.9}  # inside [1.5 - 1.5, 2.5 + 1.5], far outside tol
    assert run(tmp_path, moved, weights_sha256="same", platform=THERE).status == "failed"
    out = run(tmp_path, moved, weights_sha256="other", platform=THERE)
    assert out.status == "passed" and out.tier == "spread" and "not bit-reproducible across CPUs" in out.message
    out = run(tmp_path, {**METRICS, "curv_max": 4.1}, weights_sha256="other", platform=THERE)
    assert out.status == "failed" and "tier: spread" in out.message


def test_other_weights_on_a_cpu_with_the_same_platform_id_are_another_machine(tmp_path):
    """Two CPUs with the same platform id (x86_64, AVX512, the same torch) train different weights from
    the same recipe (MKL's branch follows the CPU model): that is another machine, not a change of the
    training code; the band applies and the message says the platform ids are equal."""
    _baseline_with_spread_made_here(tmp_path)
    out = run(tmp_path, {**METRICS, "curv_max": 3.9}, weights_sha256="other", platform=HERE)
    assert out.status == "passed" and out.tier == "spread"
    out = run(tmp_path, {**METRICS, "curv_max": 4.1}, weights_sha256="other", platform=HERE)
    assert out.status == "failed" and "math-library code paths" in out.message and "training code" not in out.message


def test_a_weights_hash_recorded_beside_the_metrics_counts_like_one_in_the_source(tmp_path):
    """The PCA-plane and interpolation files record the weights' hash at the top of the file, not in
    ``source``: other weights must still take the spread tier (CI compared a retrained net's PCA plane
    at tol and called its weights "the same as the baseline's")."""
    _baseline_with_spread_made_here(tmp_path)
    path = tmp_path / "ci" / "cfg.json"
    doc = json.loads(path.read_text())
    doc["weights_sha256"] = doc["source"].pop("weights_sha256")
    path.write_text(json.dumps(doc))
    out = run(tmp_path, {**METRICS, "curv_max": 3.9}, weights_sha256="other", platform=THERE)
    assert out.status == "passed" and out.tier == "spread"
    out = run(tmp_path, {**METRICS, "curv_max": 3.9}, weights_sha256="same", platform=THERE)
    assert out.status == "failed" and "the same weights as the baseline's" in out.message
    # an interpolation's pair of hashes names two nets: no single hash to compare with
    doc["weights_sha256"] = ["a", "b"]
    path.write_text(json.dumps(doc))
    out = run(tmp_path, {**METRICS, "curv_max": 3.9}, weights_sha256="other", platform=THERE)
    assert out.status == "failed" and out.tier == "tol" and "the same weights" not in out.message


def test_the_band_covers_the_nets_trained_on_other_code_paths(tmp_path):
    """A retrained scale's band spans its training seeds and its code-path nets (spread.band) when the
    file has them, else the seeds' own statistics."""
    _baseline_with_spread_made_here(tmp_path)
    path = tmp_path / "ci" / "cfg.json"
    doc = json.loads(path.read_text())
    doc["spread"]["band"] = {"curv_max": {"sd": 1.0, "n": 9, "min": 1.0, "max": 6.0}}
    path.write_text(json.dumps(doc))
    assert run(tmp_path, {**METRICS, "curv_max": 8.9}, weights_sha256="other", platform=THERE).status == "passed"
    assert run(tmp_path, {**METRICS, "curv_max": 9.1}, weights_sha256="other", platform=THERE).status == "failed"
    # a band that covers another machine's weights does not widen the check of the same weights
    assert run(tmp_path, {**METRICS, "curv_max": 3.9}, weights_sha256="same", platform=THERE).status == "failed"


@pytest.mark.parametrize("doc, field", [
    ([1, 2], "top level"),
    ({"format": "lossbench-baseline/1", "metrics": {}}, "format"),
    ({"format": BASELINE_FORMAT, "metrics": {"curv_max": {"value": "abc", "tol": 0.1}}}, "metrics.curv_max.value"),
    ({"format": BASELINE_FORMAT, "metrics": {"curv_max": {"value": "8.7", "tol": 0.1}}}, "metrics.curv_max.value"),
    ({"format": BASELINE_FORMAT, "metrics": {"curv_max": {"value": 8.7}}}, "metrics.curv_max.tol"),
    ({"format": BASELINE_FORMAT, "metrics": {"curv_max": {"value": 8.7, "tol": -1}}}, "metrics.curv_max.tol"),
    ({"format": BASELINE_FORMAT, "metrics": []}, "'metrics'"),
])
def test_malformed_baselines_name_file_and_field(tmp_path, doc, field):
    path = write(tmp_path, doc)
    with pytest.raises(BaselineFileError) as err:
        run(tmp_path, METRICS)
    assert str(path) in str(err.value) and field in str(err.value)


def test_corrupt_baseline_is_named(tmp_path):
    write(tmp_path, {})
    (tmp_path / "ci" / "cfg.json").write_text("{not json")
    with pytest.raises(BaselineFileError, match="cfg.json is not valid JSON"):
        run(tmp_path, METRICS)


def test_recompute_tolerance_is_ten_times_the_jitter_with_a_floor():
    tol = recompute_tolerances({"curv_max": 2.0, "local_minima": 1.0}, {"curv_max": 1e-4, "local_minima": 0.0})
    assert tol["curv_max"] == pytest.approx(SAFETY_FACTOR * 1e-4)
    assert tol["local_minima"] == 0.0
    assert recompute_tolerances({"curv_max": 2.0}, {"curv_max": 0.0})["curv_max"] == floor_tolerance("curv_max", 2.0)


def test_stored_values_keep_enough_digits_for_their_tolerance(tmp_path):
    """A value rounded to 6 digits moves by up to 5e-6 of itself: more than a 1e-6 tolerance."""
    value = 1.0031824999
    doc = make_baseline("x", "ci", {"roughness": value}, source=SOURCE)
    entry = doc["metrics"]["roughness"]
    assert abs(entry["value"] - value) < 1e-3 * entry["tol"]


def test_stored_tolerance_is_never_rounded_below_the_measured_one(tmp_path):
    doc = make_baseline("x", "ci", {"curv_max": 2.0}, source=SOURCE, tolerances={"curv_max": 1.23449e-5})
    assert doc["metrics"]["curv_max"]["tol"] >= 1.23449e-5


def test_spread_stats():
    s = spread_stats({"curv_max": [1.0, 2.0, 3.0], "eig_min": [float("nan"), 1.0]})
    assert s["curv_max"] == {"sd": 1.0, "n": 3, "min": 1.0, "max": 3.0}
    assert s["eig_min"]["n"] == 1 and s["eig_min"]["sd"] == 0.0


def test_kinds_and_rounding():
    assert metric_kind("sharpness_0.5") == "sharpness" and metric_kind("acc_center") == "acc"
    assert metric_kind("eig_ratio_mean") == "eig" and metric_kind("eig_converged_fraction") == "fraction"
    assert round_sig(1.23456789) == 1.23457 and round_sig(0.0) == 0.0
    rows = compare({"a": 1.0}, make_baseline("x", "ci", {"a": 1.0}, source=SOURCE))
    assert rows[0].ok and rows[0].rel_diff == 0.0


def test_published_numbers_are_stored_with_their_source():
    from pathlib import Path

    from lossbench.baselines import load_paper_numbers

    paper = load_paper_numbers(Path(__file__).parent.parent / "baselines")
    assert "arXiv 1712.09913" in paper["source"]
    errors = paper["test_error_percent"]
    assert errors["resnet56"] == 5.89 and errors["resnet110-noshort"] == 16.44
    # the paper's own claim: removing shortcuts hurts more the deeper the net
    gaps = [errors[f"resnet{d}-noshort"] - errors[f"resnet{d}"] for d in (20, 56, 110)]
    assert gaps == sorted(gaps)


def test_claim_verdicts_are_recorded_then_compared(tmp_path):
    from lossbench.baselines import check_verdicts

    path = tmp_path / "small" / "claims.json"
    verdicts = {"large-batch-sharper[resnet20]": "holds", "pca-explains-path[resnet20-bs128-s0]": "fails"}
    converged = {"resnet20-bs128-s0": True, "resnet20-bs2000-s0": True}
    assert check_verdicts(path, verdicts, converged, source=SOURCE).status == "created"
    assert check_verdicts(path, verdicts, converged, source=SOURCE).status == "passed"
    flipped = {**verdicts, "large-batch-sharper[resnet20]": "fails"}
    out = check_verdicts(path, flipped, converged, source=SOURCE)
    assert out.status == "failed" and "large-batch-sharper[resnet20]: recorded holds, obtained fails" in out.message
    out = check_verdicts(path, verdicts, {**converged, "resnet20-bs2000-s0": False}, source=SOURCE)
    assert out.status == "failed" and "resnet20-bs2000-s0: converged recorded True, obtained False" in out.message
    gone = dict(verdicts)
    del gone["large-batch-sharper[resnet20]"]
    assert check_verdicts(path, gone, converged, source=SOURCE).status == "failed"
    assert check_verdicts(path, flipped, converged, source=SOURCE, regen_all=True).status == "passed"
    assert json.loads(path.read_text())["verdicts"]["large-batch-sharper[resnet20]"] == "fails"


def _tiny_writer_scale(tmp_path, monkeypatch):
    """(config, scale, writer keyword arguments) of a one-net retrained scale small enough for the
    baseline writers to run in seconds."""
    import dataclasses

    import torch

    import lossbench.reproduce as reproduce_mod
    from lossbench.config import SCALES

    # the commands' plumbing is under test, not the curvature's precision: a shorter Lanczos and
    # fewer probes (still converged on this net) keep the tests to seconds
    for key, value in (("max_iter", 30), ("probes", 4)):
        monkeypatch.setitem(reproduce_mod.CURVATURE, key, value)
    ci = SCALES["ci"]
    config = ci.configs[0].replace(depth=8, epochs=2, n_train=256, n_test=64)
    # 16 Hessian images (the scale's 64 made this the suite's slowest test: its HVPs were most of it)
    tiny = dataclasses.replace(ci, configs=(config,), surface_x="-0.5:0.5:5", surface_y="-0.5:0.5:5", eval_samples=64,
                               eval_batch=48, hessian_samples=16, hessian_batch=12)
    kw = dict(baselines_dir=tmp_path / "b", results_dir=tmp_path / "r", device=torch.device("cpu"),
              cache_dir=tmp_path / "cache", say=lambda line: None)
    return config, tiny, kw


def test_baselines_command_writes_a_file_that_passes_its_own_check_and_spread_needs_it(tmp_path, monkeypatch):
    """`python -m lossbench baselines` on a tiny retrained scale: the file validates, names its tier
    inputs, and the same computation passes the check at tol; --spread without the file says what to run."""
    import torch

    import lossbench.reproduce as reproduce_mod
    from lossbench.baselines import check, load_baseline, uncertainty_context
    from lossbench.data import load_dataset
    from lossbench.regenerate import write_recompute_baselines, write_spread
    from lossbench.reproduce import recompute_jitter
    from lossbench.train import train

    config, tiny, kw = _tiny_writer_scale(tmp_path, monkeypatch)
    [path] = write_recompute_baselines(tiny, code_paths=({"MKL_CBWR": "AVX2"},), **kw)
    doc = load_baseline(path)
    assert doc["config_hash"] == config.config_hash and doc["source"]["weights_sha256"]
    # the code path is a recompute variant of its own, and the trace's tolerance knows its terms
    assert "MKL_CBWR=AVX2" in doc["jitter_variants"] and "dtype=float64" in doc["jitter_variants"]
    cond = doc["conditioning"]["trace"]
    assert doc["jitter"]["trace"] >= cond["terms_deviation"] >= cond["measured_deviation"] * (1 - 1e-2)
    assert cond["conditioning"] >= 1
    assert all(entry["tol"] > 0 for name, entry in doc["metrics"].items() if metric_kind(name) != "count")  # exact
    result = train(config, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(reproduce_mod, "RECOMPUTE_VARIANTS", ())  # the base computation once: what the suite runs
    obtained, _, _ = recompute_jitter(config, tiny, model=result.model, data=load_dataset(config),
                                      results_dir=tmp_path / "again", checkpoints=result.checkpoints)
    outcome = check(path, obtained, config_id=config.config_id, scale="ci", source=doc["source"],
                    config_hash=config.config_hash, weights_sha256=doc["source"]["weights_sha256"],
                    platform=doc["source"]["platform"])
    assert outcome.status == "passed" and len(outcome.rows) == len(doc["metrics"]), outcome.message
    moved = {k: v + 50 * doc["metrics"][k]["tol"] for k, v in obtained.items()}  # a change of the code
    assert check(path, moved, config_id=config.config_id, scale="ci", source=doc["source"],
                 config_hash=config.config_hash).status == "failed"
    assert set(doc["sampling"]) == {"eig_max", "eig_min", "eig_ratio_center", "trace"}
    assert all(len(e["values"]) == 3 and e["images"] == 16 for e in doc["sampling"].values())
    # seed 0 trained again on ATen's AVX2 kernels (or, where this process already runs them, on its
    # unvectorised ones), in a subprocess: other weights, part of the band
    aten = "default" if torch.backends.cpu.get_cpu_capability().lower() == "avx2" else "avx2"
    [same] = write_spread(tiny, seeds=(0, 1), code_paths=({"ATEN_CPU_CAPABILITY": aten},), **kw)
    spread = load_baseline(same)["spread"]
    assert spread["seeds"] == [0, 1] and len(spread["finals"]) == 2 and len(spread["weights_sha256"]) == 2
    assert spread["code_paths"]["variants"] == [f"ATEN_CPU_CAPABILITY={aten}"]
    assert spread["code_paths"]["weights_sha256"][0] != doc["source"]["weights_sha256"]
    assert spread["band"]["curv_max"]["n"] == 3
    lowest = min(spread["code_paths"]["metrics"]["curv_max"][0], *spread["metrics"]["curv_max"]["values"])
    assert spread["band"]["curv_max"]["min"] == pytest.approx(lowest, rel=1e-5)  # stored to 6 digits
    assert spread["metrics"]["curv_max"]["values"][0] == doc["metrics"]["curv_max"]["value"]
    context = uncertainty_context(load_baseline(same))
    assert context["seeds"]["seeds"] == [1] and len(context["seeds"]["metrics"]["curv_max"]) == 1
    assert context["uncertainty"]["eig_max"]["sampling"] == doc["sampling"]["eig_max"]["sd"]
    path.unlink()
    with pytest.raises(FileNotFoundError, match="write it first with `python -m lossbench baselines --scale ci`"):
        write_spread(tiny, seeds=(0,), **kw)


def test_the_seed_jitter_writer_measures_each_seeds_hessian_numbers_against_the_stored_ones(tmp_path, monkeypatch):
    """`baselines --seed-jitter` on a tiny retrained scale: each seed's Hessian numbers get a jitter
    entry (seed 0's is the file's own), over float64 and a code path in a subprocess, the spread's values
    unchanged; a stored value another CPU computed 1e-3 away is counted, since the deviation is taken
    from the stored values; a seed outside the spread names the command that measures it."""


    import lossbench.reproduce as reproduce_mod
    from lossbench.baselines import load_baseline, seed_baseline, write_baseline
    from lossbench.regenerate import SEED_JITTER_METRICS, write_recompute_baselines, write_seed_jitter, write_spread

    _, tiny, kw = _tiny_writer_scale(tmp_path, monkeypatch)
    monkeypatch.setattr(reproduce_mod, "RECOMPUTE_VARIANTS", ())  # the spread's values are what is under test
    [path] = write_recompute_baselines(tiny, code_paths=(), **kw)
    write_spread(tiny, seeds=(0, 1), code_paths=(), **kw)
    before = load_baseline(path)["spread"]
    assert "jitter" not in before  # a retrained scale's spread is compared by its band, not per seed
    write_seed_jitter(tiny, seeds=(0, 1), code_paths=({"MKL_CBWR": "AVX2"},), **kw)
    doc = load_baseline(path)
    spread = doc["spread"]
    assert spread["metrics"] == before["metrics"]
    assert set(spread["jitter"]) == set(SEED_JITTER_METRICS)
    assert spread["jitter_variants"] == ["MKL_CBWR=AVX2", "dtype=float64", "this CPU"]
    for name, (zero, one) in spread["jitter"].items():
        assert zero == doc["jitter"][name] and 0 <= one < 1e-3 * abs(spread["metrics"][name]["values"][1]) + 1e-6, name
    # the stored seed-1 lambda_max as another CPU might have computed it: that CPU's deviation is counted
    stored = spread["metrics"]["eig_max"]["values"][1]
    spread["metrics"]["eig_max"]["values"][1] = stored * (1 + 1e-3)
    write_baseline(path, doc)
    write_seed_jitter(tiny, seeds=(1,), code_paths=(), **kw)
    again = load_baseline(path)["spread"]["jitter"]
    assert again["eig_max"][1] >= 0.99e-3 * abs(stored) and again["eig_max"][0] == doc["jitter"]["eig_max"]
    assert seed_baseline(load_baseline(path), 1)["metrics"]["eig_max"]["tol"] >= 10 * 0.99e-3 * abs(stored)
    with pytest.raises(ValueError, match="--spread --seeds 0 1 3"):
        write_seed_jitter(tiny, seeds=(3,), code_paths=(), **kw)
    tampered = load_baseline(path)
    tampered["spread"]["weights_sha256"][1] = "0" * 64  # a spread measured on other weights is not measured against
    write_baseline(path, tampered)
    with pytest.raises(ValueError, match="measured on other weights"):
        write_seed_jitter(tiny, seeds=(1,), code_paths=(), **kw)


def test_a_baseline_file_of_another_net_is_named_as_such(tmp_path):
    """A baseline file copied over another's (issue 23): the file's own config_id is compared with the
    one it is used for, before any value (it used to read as a recipe change, "regenerate it")."""
    other = check(tmp_path / "ci" / "resnet56-bs128-s0.json", METRICS, config_id="resnet56-bs128-s0", scale="ci",
                  source=SOURCE, config_hash="a" * 64)
    assert other.status == "created"
    target = tmp_path / "ci" / "resnet56-noshort-bs128-s0.json"
    target.write_text((tmp_path / "ci" / "resnet56-bs128-s0.json").read_text())
    out = check(target, METRICS, config_id="resnet56-noshort-bs128-s0", scale="ci", source=SOURCE,
                config_hash="b" * 64)
    assert out.status == "failed"
    assert "baseline file of resnet56-bs128-s0 used for resnet56-noshort-bs128-s0" in out.message
    assert "recipe" not in out.message


def test_eigmap_spread_can_be_written_for_one_map_of_the_pair(tmp_path, monkeypatch):
    """`baselines --eig-maps --spread --only <id>`: the map whose seeds are shipped gets its spread while
    the other's seeds are still training (the other file is left as it was); an id outside the pair is
    an error that names the pair."""
    import torch

    import lossbench.regenerate as regen_mod
    from lossbench.baselines import load_baseline, make_baseline, write_baseline
    from lossbench.config import SCALES, find_config

    scale = SCALES["small"]
    pair = [find_config("small", depth=56, shortcut=s, batch_size=128) for s in (True, False)]
    for config in pair:
        write_baseline(tmp_path / "b" / "small" / "eigmap" / f"{config.config_id}.json",
                       make_baseline(f"eigmap/{config.config_id}", "small", {"eig_ratio_mean": 0.1}, source=SOURCE))
    measured = []

    class Net:
        model = None
        state_sha256 = "f" * 64

    def fake_net(config, *_, **__):
        measured.append(config.config_id)
        return Net()

    monkeypatch.setattr(regen_mod, "net_of", fake_net)
    monkeypatch.setattr(regen_mod, "eig_map_summary", lambda *a, **k: (None, {"eig_ratio_mean": 0.2}))
    monkeypatch.setattr(regen_mod, "load_dataset", lambda *a, **k: None)
    kw = dict(baselines_dir=tmp_path / "b", results_dir=tmp_path / "r", device=torch.device("cpu"), variants=(),
              say=lambda line: None)
    written = regen_mod.write_eigmap_baselines(scale, spread_seeds=(0, 1, 2), only=[pair[0].config_id], **kw)
    assert [p.stem for p in written] == [pair[0].config_id]
    assert measured == [pair[0].replace(seed=1).config_id, pair[0].replace(seed=2).config_id]
    assert load_baseline(written[0])["spread"]["metrics"]["eig_ratio_mean"]["values"] == [0.1, 0.2, 0.2]
    assert "spread" not in load_baseline(tmp_path / "b" / "small" / "eigmap" / f"{pair[1].config_id}.json")
    with pytest.raises(ValueError, match="resnet20-bs128-s0: not among the eigen-ratio maps; expected some of "
                                         "resnet56-bs128-s0, resnet56-noshort"):
        regen_mod.write_eigmap_baselines(scale, spread_seeds=(0, 1), only=["resnet20-bs128-s0"], **kw)


def test_a_retrained_scales_eigmap_band_spans_seeds_and_code_path_nets(tmp_path, monkeypatch):
    """`baselines --eig-maps --spread` at a retrained scale: besides seeds 1-2, seed 0 is trained and its
    map measured on each code path (in a subprocess: here a stand-in that records what it was asked),
    and spread.band holds the statistics over all of them."""
    import torch

    import lossbench.regenerate as regen_mod
    from lossbench.baselines import load_baseline, make_baseline, write_baseline
    from lossbench.config import SCALES, find_config

    scale = SCALES["ci"]
    config = find_config("ci", depth=56, shortcut=True, batch_size=128)
    write_baseline(tmp_path / "b" / "ci" / "eigmap" / f"{config.config_id}.json",
                   make_baseline(f"eigmap/{config.config_id}", "ci", {"eig_ratio_mean": 0.1}, source=SOURCE))
    asked = []

    class Net:
        model = None
        state_sha256 = "f" * 64

    def fake_run(env, task, kwargs):
        asked.append((dict(env), task, kwargs["what"], kwargs["cache_dir"]))
        return {"metrics": {"eig_ratio_mean": 0.5}, "weights_sha256": "e" * 64}

    monkeypatch.setattr(regen_mod, "net_of", lambda *a, **k: Net())
    monkeypatch.setattr(regen_mod, "eig_map_summary", lambda *a, **k: (None, {"eig_ratio_mean": 0.2}))
    monkeypatch.setattr(regen_mod, "load_dataset", lambda *a, **k: None)
    monkeypatch.setattr(regen_mod, "run_code_path", fake_run)
    paths = ({"MKL_CBWR": "AVX2"}, {"ATEN_CPU_CAPABILITY": "avx2"})
    [path] = regen_mod.write_eigmap_baselines(scale, spread_seeds=(0, 1, 2), only=[config.config_id], variants=(),
                                              baselines_dir=tmp_path / "b", results_dir=tmp_path / "r",
                                              device=torch.device("cpu"), cache_dir=tmp_path / "c", say=lambda m: None,
                                              code_paths=paths)
    assert [a[:3] for a in asked] == [({"MKL_CBWR": "AVX2"}, "train_measure", "eig_map"),
                                      ({"ATEN_CPU_CAPABILITY": "avx2"}, "train_measure", "eig_map")]
    assert asked[0][3] != asked[1][3]  # each code path trains into a cache of its own
    spread = load_baseline(path)["spread"]
    assert spread["metrics"]["eig_ratio_mean"]["values"] == [0.1, 0.2, 0.2]
    assert spread["code_paths"]["variants"] == ["MKL_CBWR=AVX2", "ATEN_CPU_CAPABILITY=avx2"]
    assert spread["band"]["eig_ratio_mean"]["n"] == 5 and spread["band"]["eig_ratio_mean"]["max"] == 0.5


def test_a_training_seeds_own_hessian_jitter_widens_its_tolerance_where_seed_zeros_does_not_cover_it():
    """seed_baseline with ``spread.jitter``: the tol of a seed's Hessian number is at least SAFETY_FACTOR
    times that seed's own jitter (the seed recipe's ResNet-56 at batch 2000, seed 2: oneDNN's AVX2 and
    AVX-512 kernels 1e-4 of lambda_max apart, where seed 0's scaled tol allowed 1e-5), and the seed-0
    scaled tol still where the seed's jitter is smaller; an infinite jitter is not a tolerance."""
    from lossbench.baselines import SAFETY_FACTOR, compare, seed_baseline

    doc = {"config_id": "net-s0", "metrics": {"eig_max": {"value": 279.6, "tol": 0.0028},
                                              "trace": {"value": 944.4, "tol": 0.0153}},
           "spread": {"seeds": [0, 1, 2], "weights_sha256": ["a", "b", "c"],
                      "metrics": {"eig_max": {"values": [279.6, 5.2, 1571.93]}, "trace": {"values": [944.4, 3.6, 3721.72]}},
                      "jitter": {"eig_max": [0.000275, 1e-7, 0.142], "trace": [0.00153, float("inf"), None]}}}
    two, one = seed_baseline(doc, 2), seed_baseline(doc, 1)
    assert two["metrics"]["eig_max"]["tol"] == pytest.approx(SAFETY_FACTOR * 0.142)
    assert one["metrics"]["eig_max"]["tol"] == 0.0028  # seed 0's, where the seed's own jitter is smaller
    assert one["metrics"]["trace"]["tol"] == 0.0153 and two["metrics"]["trace"]["tol"] == pytest.approx(0.0153 * 3721.72 / 944.4)
    # this CPU's values of seed 2 (oneDNN's AVX-512 kernels) against the EPYC's stored ones (its AVX2 kernels)
    rows = {r.name: r.ok for r in compare({"eig_max": 1571.789, "trace": 3721.33}, two)}
    assert rows == {"eig_max": True, "trace": False}
    no_jitter = {**doc, "spread": {k: v for k, v in doc["spread"].items() if k != "jitter"}}
    assert not next(r for r in compare({"eig_max": 1571.789}, seed_baseline(no_jitter, 2)) if r.name == "eig_max").ok


def test_a_training_seeds_baseline_comes_from_the_spread_with_seed_zeros_tolerance_scaled():
    """seed_baseline: the stored value at the seed, seed 0's tol (scaled up where the seed's value is
    larger, never below the floor), the seed's weights hash; compare() then judges a recomputation."""
    from lossbench.baselines import compare, floor_tolerance, seed_baseline

    doc = {"config_id": "net-s0",
           "metrics": {"curv_max": {"value": 2.0, "tol": 0.01}, "eig_min": {"value": 0.0, "tol": 1e-4},
                       "new_metric": {"value": 1.0, "tol": 0.1}},
           "spread": {"seeds": [0, 1, 2], "weights_sha256": ["a", "b", "c"],
                      "metrics": {"curv_max": {"sd": 1, "n": 3, "min": 1, "max": 4, "values": [2.0, 4.0, 1.0]},
                                  "eig_min": {"sd": 0, "n": 3, "min": 0, "max": 0, "values": [0.0, -0.5, 0.0]}}}}
    one, two = seed_baseline(doc, 1), seed_baseline(doc, 2)
    assert one["weights_sha256"] == "b" and two["weights_sha256"] == "c"
    assert set(one["metrics"]) == {"curv_max", "eig_min"}  # a metric without per-seed values is not invented
    assert one["metrics"]["curv_max"] == {"value": 4.0, "tol": max(0.02, floor_tolerance("curv_max", 4.0))}
    assert two["metrics"]["curv_max"]["tol"] == max(0.01, floor_tolerance("curv_max", 1.0))  # never tighter
    assert one["metrics"]["eig_min"]["tol"] == max(1e-4, floor_tolerance("eig_min", -0.5))
    rows = {r.name: r.ok for r in compare({"curv_max": 4.015, "eig_min": -0.5}, one)}
    assert rows == {"curv_max": True, "eig_min": True}
    assert not next(r for r in compare({"curv_max": 4.05, "eig_min": -0.5}, one) if r.name == "curv_max").ok
    with pytest.raises(KeyError, match="--spread"):
        seed_baseline(doc, 3)
    assert seed_baseline({**doc, "spread": {**doc["spread"], "weights_sha256": []}}, 1)["weights_sha256"] is None


def test_metrics_left_out_as_not_recomputed_are_skipped_never_all_and_kept_by_a_regeneration(tmp_path):
    """check(..., not_recomputed=...): stored metrics the caller did not compute are left out (not
    'missing'); one it did compute is compared anyway; a check that compares nothing fails; a
    regeneration keeps the left-out entries as stored."""
    from lossbench.baselines import check, load_baseline, make_baseline, write_baseline

    path = tmp_path / "m.json"
    doc = make_baseline("m", "ci", {"a": 1.0, "p@0,0": 2.0, "p@0,1": 3.0}, source=SOURCE)
    write_baseline(path, doc)
    kw = dict(config_id="m", scale="ci", source=SOURCE)
    assert check(path, {"a": 1.0, "p@0,0": 2.0}, not_recomputed=["p@0,1"], **kw).status == "passed"
    assert check(path, {"a": 1.0, "p@0,0": 2.0}, **kw).status == "failed"  # missing without the list
    assert check(path, {"a": 1.0, "p@0,0": 2.5}, not_recomputed=["p@0,0", "p@0,1"], **kw).status == "failed"
    nothing = check(path, {}, not_recomputed=["a", "p@0,0", "p@0,1"], **kw)
    assert nothing.status == "failed" and "nothing was compared" in nothing.message
    assert check(path, {"a": 1.5, "p@0,0": 2.0}, not_recomputed=["p@0,1"], regen_all=True, **kw).status == "passed"
    kept = load_baseline(path)["metrics"]
    assert kept["a"]["value"] == 1.5 and kept["p@0,1"]["value"] == 3.0


def test_spectrum_baselines_store_the_summary_with_its_sampling_and_a_checkable_top(tmp_path, monkeypatch):
    """`baselines --spectrum` on a tiny retrained scale: the summary numbers on subset 0 with their
    values on two disjoint image subsets, the top eigenvalues with recompute tolerances (code path
    included) that the same computation passes, and a 0.5 % change of lambda_1 fails."""
    import dataclasses

    import torch

    import lossbench.hessian as hessian_mod
    import lossbench.reproduce as reproduce_mod
    from lossbench.baselines import check, load_baseline
    from lossbench.config import SCALES
    from lossbench.data import load_dataset
    from lossbench.regenerate import write_spectrum_baselines
    from lossbench.reproduce import spectrum_check_metrics
    from lossbench.train import train

    # the plumbing is under test: a short Lanczos for the top 6 (the summary's rule needs k >= 3)
    monkeypatch.setitem(reproduce_mod.CURVATURE, "max_iter", 80)
    monkeypatch.setattr(hessian_mod, "SUMMARY_TOP_K", 6)
    ci = SCALES["ci"]
    config = ci.configs[0].replace(depth=8, epochs=2, n_train=256, n_test=64)
    tiny = dataclasses.replace(ci, configs=(config,), spectrum_samples=24, spectrum_probes=2, spectrum_steps=12)
    [path] = write_spectrum_baselines(tiny, baselines_dir=tmp_path / "b", results_dir=tmp_path / "r",
                                      device=torch.device("cpu"), cache_dir=tmp_path / "cache", say=lambda line: None,
                                      code_paths=({"MKL_CBWR": "AVX2"},))
    doc = load_baseline(path)
    assert set(doc["metrics"]) == {"spec_top1", "spec_top2", "spec_top3"}
    assert "MKL_CBWR=AVX2" in doc["jitter_variants"] and "dtype=float64" in doc["jitter_variants"]
    assert {"spec_outliers", "spec_bulk_edge", "spec_negative_mass", "spec_mean_eig"} <= set(doc["summary"])
    assert all(len(e["values"]) == 2 and e["images"] == 24 for e in doc["sampling"].values())
    assert doc["sampling"]["spec_mean_eig"]["values"][0] != doc["sampling"]["spec_mean_eig"]["values"][1]
    net = train(config, cache_dir=tmp_path / "cache")
    got = spectrum_check_metrics(net.model, load_dataset(config), tiny)
    kw = dict(config_id=f"spectrum/{config.config_id}", scale="ci", source=doc["source"])
    assert check(path, got, **kw).status == "passed"
    assert check(path, dict(got, spec_top1=got["spec_top1"] * 1.005), **kw).status == "failed"
    # what the report draws: the SLQ quadrature of subset 0 and the plane of the top two eigenvectors
    density = doc["density"]
    assert np.array(density["nodes"]).shape == (2, 12) and np.allclose(np.sum(density["weights"], axis=1), 1, atol=1e-5)
    plane = doc["plane"]
    assert np.array(plane["train_loss"]).shape == (11, 11) and plane["eigenvalues"][0] == pytest.approx(
        doc["top"]["values"][0], rel=1e-5)
    assert plane["alpha"][-1] == pytest.approx(plane["radius"] / plane["theta_norm"], rel=1e-5)
    # the radius is where the loss along the top eigenvector has risen by `rise` nats (to the geometric
    # line's interpolation): the plane's edge on that axis
    z = np.array(plane["train_loss"])
    assert plane["reached"] and 0.5 * plane["rise"] < z[-1, 5] - z[5, 5] < 2 * plane["rise"], (z[-1, 5], z[5, 5])
    # the seed spread: seed 0's summary is the file's own, seed 1's is another net's
    write_spectrum_baselines(tiny, baselines_dir=tmp_path / "b", results_dir=tmp_path / "r", spread_seeds=(0, 1),
                             device=torch.device("cpu"), cache_dir=tmp_path / "cache", say=lambda line: None)
    spread = load_baseline(path)["spread"]
    assert spread["seeds"] == [0, 1] and len(set(spread["weights_sha256"])) == 2
    mean = spread["metrics"]["spec_mean_eig"]["values"]
    assert mean[0] == pytest.approx(doc["summary"]["spec_mean_eig"], rel=1e-6) and mean[1] != mean[0]


def test_code_path_results_are_kept_so_an_interrupted_regeneration_resumes(tmp_path, monkeypatch):
    """code_path_jitter with done_dir: a code path that finished is not run again by a rerun (one that
    failed half-way through the list runs only the rest); other weights, arguments or code run every one."""
    import lossbench.regenerate as regen_mod
    from lossbench.codepaths import code_path_name

    calls = []

    def fake(env, task, kwargs, fail_on=None):
        name = code_path_name(env)
        if name == fail_on:
            raise RuntimeError("interrupted")
        calls.append(name)
        return {"metrics": {"m": 1.0 + 0.01 * len(name)}}

    paths = ({"MKL_CBWR": "AVX2"}, {"ATEN_CPU_CAPABILITY": "avx2"})
    run = lambda **k: regen_mod.code_path_jitter("eig_map", k.pop("kwargs", {"a": 1}), {"m": 1.0},  # noqa: E731
                                                 code_paths=paths, done_dir=tmp_path, say=lambda s: None, **k)
    monkeypatch.setattr(regen_mod, "run_code_path", lambda *a: fake(*a, fail_on="ATEN_CPU_CAPABILITY=avx2"))
    with pytest.raises(RuntimeError):
        run(weights="w1")
    assert calls == ["MKL_CBWR=AVX2"]
    monkeypatch.setattr(regen_mod, "run_code_path", fake)
    first = run(weights="w1")
    assert calls == ["MKL_CBWR=AVX2", "ATEN_CPU_CAPABILITY=avx2"]
    assert run(weights="w1") == first and len(calls) == 2
    run(weights="w2")
    assert len(calls) == 4
    run(weights="w2", kwargs={"a": 2})
    assert len(calls) == 6
    # the same weights and arguments after a change of lossbench's code: run again, not reused
    monkeypatch.setattr(regen_mod, "_code_digest", lambda: "another version of the code")
    run(weights="w2", kwargs={"a": 2})
    assert len(calls) == 8
    assert first[0] == {"m": 0.01 * len("ATEN_CPU_CAPABILITY=avx2")}


def test_a_writer_does_its_part_of_the_main_job_or_the_ids_it_is_given_and_refuses_others():
    """Without --only a writer does what the main job checks; --only may also name an authors'-recipe
    net (its files are written before that matrix is judged), and an id that is neither is an error
    that lists the ids it could be, rather than a run that writes nothing."""
    from lossbench.config import get_scale
    from lossbench.regenerate import chosen_configs

    scale = get_scale("small")
    # the split as it stands while an authors' matrix is trained (it holds whether or not one joined since):
    # four nets per matrix (the 20 %-warm-up one and the clipped one, told apart by their clip)
    extra = tuple(c for c in scale.known_configs if "-authors-" in c.config_id)
    pool = tuple(c for c in scale.all_configs if c not in extra)
    authors = [c.config_id for c in extra]
    matrices = len({c.clip_grad_norm for c in extra})
    assert len(authors) == 4 * matrices and len(set(authors)) == len(authors)
    assert chosen_configs(pool, extra, None, "nets") == list(pool)
    picked = chosen_configs(pool, extra, [authors[0], "resnet20-bs128-s0"], "nets")
    assert {c.config_id for c in picked} == {authors[0], "resnet20-bs128-s0"}
    with pytest.raises(ValueError, match=r"--only resnet21-bs128-s0: not among the nets; expected some of resnet20"):
        chosen_configs(pool, extra, ["resnet21-bs128-s0", authors[0]], "nets")
    maps = [c for c in extra if scale.has_eig_map(c)]
    assert sorted(c.depth for c in maps) == [56, 56] * matrices and {c.shortcut for c in maps} == {True, False}


def test_a_code_path_that_computes_as_another_is_counted_as_it_and_not_run_again(monkeypatch):
    """`baselines --code-paths all` measures each distinct branch once: a variant whose arithmetic digest
    equals the default's deviates by 0, one equal to an earlier variant's takes that one's result; the
    rest run, and the file names the twins (``code_path_twins``)."""
    import lossbench.regenerate as regen_mod
    from lossbench.codepaths import CodePathError, code_path_name, same_branch

    digests = {"": "d0", "MKL_CBWR=COMPATIBLE": "d1", "MKL_CBWR=SSE4_2": "d2", "MKL_CBWR=AVX2": "d2",
               "ATEN_CPU_CAPABILITY=default": "d0", "ONEDNN_MAX_CPU_ISA=SSE41": None}
    calls = []

    def fake(env, task, kwargs):
        name = code_path_name(env)
        calls.append((task, name))
        if task == "digest":
            if digests[name] is None:
                raise CodePathError("no digest")
            return {"digest": digests[name]}
        return {"metrics": {"m": 1.0 + 0.01 * len(name)}, "trace_terms": [len(name)]}

    paths = tuple({k: v} for k, v in (n.split("=") for n in list(digests)[1:]))
    monkeypatch.setattr(regen_mod, "available_code_paths", lambda: paths)
    monkeypatch.setattr(regen_mod, "run_code_path", fake)
    assert same_branch(paths, fake) == {"MKL_CBWR=AVX2": "MKL_CBWR=SSE4_2", "ATEN_CPU_CAPABILITY=default": "default"}
    calls.clear()
    resolved, twins = regen_mod.resolve_code_paths(None, say=lambda s: None)
    assert resolved == paths and twins == {"MKL_CBWR=AVX2": "MKL_CBWR=SSE4_2", "ATEN_CPU_CAPABILITY=default": "default"}
    assert regen_mod.resolve_code_paths(paths[:2], say=lambda s: None) == (paths[:2], {})  # as asked: each runs
    calls.clear()
    jitter, measured, _ = regen_mod.code_path_jitter("eig_map", {}, {"m": 1.0}, code_paths=paths, twins=twins,
                                                     say=lambda s: None)
    assert [n for _, n in calls] == ["MKL_CBWR=COMPATIBLE", "MKL_CBWR=SSE4_2", "ONEDNN_MAX_CPU_ISA=SSE41"]
    assert measured["MKL_CBWR=AVX2"] == measured["MKL_CBWR=SSE4_2"] and measured["ATEN_CPU_CAPABILITY=default"] == {"m": 1.0}
    assert jitter == {"m": pytest.approx(0.01 * len("ONEDNN_MAX_CPU_ISA=SSE41"))}
    assert regen_mod._twins_entry(twins) == {"code_path_twins": {"ATEN_CPU_CAPABILITY=default": "default",
                                                                 "MKL_CBWR=AVX2": "MKL_CBWR=SSE4_2"}}
    assert regen_mod._twins_entry({}) == {}


def test_the_all_seeds_check_takes_every_further_seed_a_spread_stores():
    from lossbench.baselines import further_seeds

    assert further_seeds({"spread": {"seeds": [0, 1, 2, 3]}}) == (1, 2, 3)
    assert further_seeds({"spread": {"seeds": [0, 1, 2]}}) == (1, 2)
    assert further_seeds({"metrics": {}}) == (1, 2) and further_seeds(None, (1,)) == (1,)
