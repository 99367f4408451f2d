import json

import pytest

from lossbench.baselines import (
    check, compare, default_tolerance, make_baseline, metric_kind, round_sig, spread_tolerances,
)

SOURCE = {"commit": "abc1234", "torch": "2.x", "device": "cpu", "date": "2026-01-01"}
METRICS = {"curv_max": 2.0, "loss_center": 0.5, "local_minima": 0.0, "nonconvex_fraction": 0.1}


def run(tmp_path, obtained, **kw):
    return check(tmp_path / "ci" / "cfg.json", obtained, config_id="cfg", scale="ci", source=SOURCE, **kw)


def test_missing_baseline_is_created_and_reported(tmp_path):
    out = run(tmp_path, METRICS)
    assert out.status == "created" and "review and commit" in out.message
    doc = json.loads((tmp_path / "ci" / "cfg.json").read_text())
    assert doc["metrics"]["curv_max"] == {"value": 2.0, **default_tolerance("curv_max"), "source": SOURCE}
    text = (tmp_path / "ci" / "cfg.json").read_text()
    assert text.endswith("}\n") and text == json.dumps(doc, indent=2, sort_keys=True) + "\n"


def test_within_tolerance_passes(tmp_path):
    run(tmp_path, METRICS)
    assert run(tmp_path, {**METRICS, "curv_max": 2.0 + 0.5 * (1e-4 + 2e-3)}).status == "passed"


def test_every_metric_is_compared_before_failing(tmp_path):
    run(tmp_path, METRICS)
    out = run(tmp_path, {**METRICS, "curv_max": 3.0, "local_minima": 2.0})
    assert out.status == "failed"
    assert "2 of 4 metrics differ" in out.message
    lines = out.message.splitlines()
    assert any(l.strip().startswith("FAIL curv_max") and "expected 2 ± 0.0021" in l and "obtained 3" in l
               and "rel diff 5.00e-01" in l for l in lines)
    assert any(l.strip().startswith("FAIL local_minima") for l in lines)
    assert any(l.strip().startswith("ok   loss_center") for l in lines)
    obtained = json.loads((tmp_path / "ci" / "cfg.obtained.json").read_text())
    assert obtained["metrics"]["curv_max"]["value"] == 3.0


def test_regen_rewrites_keeps_tolerances_and_still_fails(tmp_path):
    run(tmp_path, METRICS)
    path = tmp_path / "ci" / "cfg.json"
    doc = json.loads(path.read_text())
    doc["metrics"]["curv_max"]["atol"] = 0.123  # a hand-tuned tolerance survives regeneration
    path.write_text(json.dumps(doc))
    out = run(tmp_path, {**METRICS, "curv_max": 9.0}, regen=True)
    assert out.status == "updated"
    new = json.loads(path.read_text())
    assert new["metrics"]["curv_max"]["value"] == 9.0 and new["metrics"]["curv_max"]["atol"] == 0.123
    assert run(tmp_path, {**METRICS, "curv_max": 9.0}).status == "passed"
    assert run(tmp_path, {**METRICS, "curv_max": 1.0}, regen_all=True).status == "passed"


def test_new_or_missing_metrics_fail(tmp_path):
    run(tmp_path, METRICS)
    out = run(tmp_path, {**METRICS, "roughness": 1.0})
    assert out.status == "failed" and "expected missing" in out.message
    less = dict(METRICS)
    del less["curv_max"]
    assert run(tmp_path, less).status == "failed"


def test_corrupt_baseline_is_named(tmp_path):
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "cfg.json").write_text("{not json")
    with pytest.raises(AssertionError, match="cfg.json is not valid JSON"):
        run(tmp_path, METRICS)


def test_spread_tolerances_add_three_sd_to_the_floor():
    tol = spread_tolerances({"curv_max": [1.0, 2.0, 3.0], "local_minima": [0.0, 0.0, 0.0]})
    assert tol["curv_max"]["atol"] == pytest.approx(1e-4 + 3.0)
    assert tol["local_minima"] == {"rtol": 0.0, "atol": 0.0}


def test_kinds_and_rounding():
    assert metric_kind("sharpness_0.5") == "sharpness" and metric_kind("acc_center") == "acc"
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
