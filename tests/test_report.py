import json

import numpy as np

from lossbench.report import main
from lossbench.store import save_surface
from lossbench.surface import Surface


def bowl_surface(scale):
    x = np.linspace(-1, 1, 11)
    a, b = np.meshgrid(x, x, indexing="ij")
    s = Surface.empty(x, x, ["train_loss", "train_acc"], attrs={})
    s.values["train_loss"][:] = 0.1 + scale * (a**2 + b**2)
    s.values["train_acc"][:] = 0.9
    s.done[:] = True
    return s


def fake_run(tmp_path):
    bench = tmp_path / ".benchmarks"
    machine = bench / "Linux-CPython-3.11-64bit"
    machine.mkdir(parents=True)
    benchmarks = []
    for depth in (20, 56):
        for shortcut in (True, False):
            cid = f"resnet{depth}{'' if shortcut else '-noshort'}-bs128-s0"
            rel = f"surfaces/ci/{cid}/surface-2d.h5"
            save_surface(bench / rel, bowl_surface(1.0 if shortcut else 3.0))
            benchmarks.append({"name": f"test_reproduction[{cid}]", "stats": {"mean": 2.0}, "extra_info": {
                "config_id": cid, "scale": "ci", "grid": [11, 11], "points": 121, "eval_samples": 512,
                "seconds_per_point": 2.0 / 121, "images_per_second": 30976.0, "surface_path": rel,
                "config": {"arch": "resnet", "depth": depth, "shortcut": shortcut, "batch_size": 128, "warmup": 0.05},
                "final": {"train_loss": 0.1, "train_acc": 0.97, "test_acc": 0.9}, "converged": True,
                "metrics": {"nonconvex_fraction": 0.0 if shortcut else 0.3, "roughness": 1.0 if shortcut else 1.4,
                            "local_minima": 0.0, "basin_radius": 0.3, "curv_max": 2.0, "sharpness_0.5": 10.0,
                            "eig_max": 50.0, "eig_min": -1.0, "pca_var_1": 0.8, "pca_var_2": 0.1},
            }})
    run = {"datetime": "2026-11-27T00:00:00", "commit_info": {"id": "abcdef1234"},
           "machine_info": {"node": "box", "torch": "2.x", "python_version": "3.11"}, "benchmarks": benchmarks}
    (machine / "0001_abcdef_20261127.json").write_text(json.dumps(run))
    baselines = tmp_path / "baselines" / "ci"
    baselines.mkdir(parents=True)
    src = {"commit": "x", "torch": "2.x", "device": "cpu", "date": "2026-11-27"}
    (baselines / "resnet56-bs128-s0.json").write_text(json.dumps({"format": "lossbench-baseline/3", "source": src,
                                                                  "metrics": {
        "curv_max": {"value": 2.0, "tol": 0.1},
        "roughness": {"value": 5.0, "tol": 0.1}}}))
    return bench


def test_report_from_a_saved_run(tmp_path, capsys):
    bench = fake_run(tmp_path)
    out = tmp_path / "report"
    rc = main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)])
    assert rc == 0
    page = (out / "index.html").read_text()
    md = (out / "summary.md").read_text()
    assert "data:image/png;base64," in page and "contours-bs128.png" in md
    assert "## Verdicts" in md and md.index("## Verdicts") < md.index("## Nets")
    assert "large-batch" not in md  # one batch size in this run: no such claim to judge
    assert "| resnet56-bs128-s0 | roughness | 1 | 5 | 0.1 | FAIL |" in md
    assert (out / "contours-bs128.png").exists() and (out / "3d-resnet56-noshort-bs128-s0.png").exists()
    # no net of the authors' recipe in this run: the two contributions its matrix judges say so
    top = md[md.index("## The paper's three contributions"):md.index("## Verdicts")]
    assert top.count("| authors' recipe | — | not measured in this run |") == 2
    assert "their initialisation); its depth matrix" in top  # no authors' net here: no departures to name


def test_missing_benchmarks_says_what_to_run(tmp_path, capsys):
    rc = main(["--benchmarks", str(tmp_path / "nothing")])
    assert rc == 2
    assert "pytest benchmarks --benchmark-autosave" in capsys.readouterr().err


def test_foreign_json_is_an_error(tmp_path, capsys):
    bad = tmp_path / "run.json"
    bad.write_text("{}")
    assert main(["--run", str(bad), "-o", str(tmp_path / "r")]) == 2
    assert "not a pytest-benchmark file" in capsys.readouterr().err


def test_a_later_grid_speed_run_adds_its_table_and_keeps_the_reproduction(tmp_path):
    """`pytest benchmarks -k grid_speed --benchmark-autosave` after the full run: the report still shows
    the reproduction (newest run that has one) and tabulates the newer speed run, speed-ups included."""
    import os

    bench = fake_run(tmp_path)
    machine = bench / "Linux-CPython-3.11-64bit"

    def row(engine, mean):
        return {"name": f"test_grid_speed[resnet56-{engine}]", "group": "grid:resnet56", "stats": {"mean": mean},
                "extra_info": {"model": "resnet56", "engine": engine, "device": "cpu", "gflops": 100.0 / mean,
                               "share_of_peak": 0.3 / mean, "rel_diff_vs_reference": 1e-7}}

    later = machine / "0002_fedcba_20261128.json"
    later.write_text(json.dumps({"datetime": "2026-11-28T00:00:00", "machine_info": {},
                                 "benchmarks": [row("authors", 0.4), row("fast", 0.25)]}))
    os.utime(later, (2e9, 2e9))  # newer than the full run
    out = tmp_path / "report"
    assert main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)]) == 0
    md = (out / "summary.md").read_text()
    assert "Run `0001_abcdef_20261127.json`" in md and "from run 0002_fedcba_20261128.json" in md
    assert "| resnet56 | fast | cpu | 0.25 | 1.6 | 400 | 1.2 | 1e-07 |" in md


def test_the_connection_records_give_a_section_and_a_claim(tmp_path):
    bench = fake_run(tmp_path)
    run_path = next(bench.glob("*/0001_*.json"))
    run = json.loads(run_path.read_text())
    t = [0.0, 0.5, 1.0]
    pairs = [{"seeds": list(s), "barrier": {"line": {"train": 2.0, "test": 2.1}, "curve": {"train": 0.05, "test": 0.2}},
              "barrier_error": {"line": {"train": 0.01}, "curve": {"train": 0.01}}} for s in ((0, 1), (0, 2), (1, 2))]
    paths = {"t": t, "line": {"train_loss": [0.0, 2.0, 0.0], "train_acc": [1.0, 0.3, 1.0]},
             "curve": {"train_loss": [0.0, 0.05, 0.0], "train_acc": [1.0, 0.99, 1.0]}}
    run["benchmarks"].append({"name": "test_connection[resnet20-bs128-s0]", "stats": {"mean": 3.0}, "extra_info": {
        "kind": "connection", "config_id": "resnet20-bs128-s0", "pairs": pairs, "paths": paths,
        "checked": {"seeds": [0, 1], "metrics": {"curve_train_loss@t0.50": 0.05}}}})
    run_path.write_text(json.dumps(run))
    out = tmp_path / "report"
    assert main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)]) == 0
    md = (out / "summary.md").read_text()
    page = (out / "index.html").read_text()
    assert "## Mode connectivity" in md and "| resnet20-bs128-s0 | 0-2 | 2 | 0.01 | 0.05 |" in md
    assert "minima-connected-by-a-curve[resnet20-bs128-s0]" in md
    assert (out / "connect-resnet20-bs128-s0.png").exists()
    assert 'class="lb-view lb-2d"' in page and "curve_train_loss@t0.50 = 0.05" in page


def test_the_authors_matrix_gets_its_own_contours_and_verdict_count(tmp_path):
    """Nets of the authors' recipe in the run: their own contour grid and claims (groups authors-bs128),
    counted apart from the seed recipe's in the verdicts' summary."""
    bench = fake_run(tmp_path)
    run_path = next(bench.glob("*/0001_*.json"))
    run = json.loads(run_path.read_text())
    for b in list(run["benchmarks"]):
        info = b["extra_info"]
        cid = info["config_id"].replace("-bs128", "-sgd-wd0.0005-authors-bs128")
        rel = info["surface_path"].replace(info["config_id"], cid)
        save_surface(bench / rel, bowl_surface(1.0 if info["config"]["shortcut"] else 5.0))
        config = {**info["config"], "optimizer": "sgd", "weight_decay": 5e-4, "init": "authors", "warmup": 0.2,
                  "clip_grad_norm": 5.0}
        run["benchmarks"].append({**b, "name": f"test_reproduction[{cid}]",
                                  "extra_info": {**info, "config_id": cid, "surface_path": rel, "config": config}})
    run_path.write_text(json.dumps(run))
    out = tmp_path / "report"
    assert main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)]) == 0
    md = (out / "summary.md").read_text()
    assert "contours-bs128.png" in md and "contours-authors-bs128.png" in md
    assert (out / "contours-authors-bs128.png").exists()
    assert "depth-nonconvex-without-skips[authors-bs128]" in md and "depth-nonconvex-without-skips[bs128]" in md
    assert "The depth matrix under the authors' recipe (groups authors-…)" in md
    # the page opens with the paper's three contributions, a verdict under each recipe and its reason
    assert md.index("## The paper's three contributions") < md.index("## Verdicts")
    top = md[md.index("## The paper's three contributions"):md.index("## Verdicts")]
    assert "| authors' recipe | depth-nonconvex-without-skips[authors-bs128] |" in top
    # the recipe note reads the authors' nets' departures from their configs
    assert "theirs (SGD with Nesterov momentum, weight decay 5e-4, their initialisation) with a 20 % warm-up and " \
           "each step's gradient clipped to a global norm of 5, the departures" in top
    # each contribution's title once, above all its claims under both recipes
    assert top.count("Without skip connections the landscape turns from nearly convex to chaotic") == 1
    assert "not measured in this run" not in top
    assert "| seed recipe | depth-nonconvex-without-skips[bs128] |" in top
    assert "skips-prevent-nonconvexity[authors-bs128]" in top
    # one training seed per net here: unresolved, and the reason names the seeds it waits for
    assert "training seeds, the seed-to-seed error unknown" in top
    assert "| unresolved | margin " in top  # its margin first, the note after it


def test_the_stored_spectra_give_a_section_with_densities_planes_and_claims(tmp_path):
    """Spectrum records of a run, with their stored files: the summary table, the densities overlaid,
    each net's eigenvector plane beside its random plane, and the spectrum claims among the verdicts."""
    bench = fake_run(tmp_path)
    run_path = next(bench.glob("*/0001_*.json"))
    run = json.loads(run_path.read_text())
    folder = tmp_path / "baselines" / "ci" / "spectrum"
    folder.mkdir()
    rng = np.random.default_rng(0)
    x = list(np.linspace(-0.02, 0.02, 11))
    for depth in (20, 56):
        for shortcut in (True, False):
            cid = f"resnet{depth}{'' if shortcut else '-noshort'}-bs128-s0"
            neg = 0.01 if shortcut else 0.05
            summary = {"spec_lambda_max": 5.0, "spec_negative_share": neg, "spec_negative_share_err": 0.001,
                       "spec_negative_share_bound": 0.001, "spec_outliers": 3.0, "spec_mean_eig": 0.01}
            nodes = np.sort(rng.normal(0, 0.1, (2, 12)), axis=1)
            nodes[:, -1] = 5.0
            a, b = np.meshgrid(x, x, indexing="ij")
            doc = {"summary": summary, "spectrum": {"samples": 64, "probes": 2, "steps": 12},
                   "density": {"dim": 1000, "nodes": nodes.tolist(), "weights": np.full((2, 12), 1 / 12).tolist()},
                   "top": {"values": [5.0, 2.0, 1.0], "converged": [True, True, False]},
                   "plane": {"alpha": x, "beta": x, "train_loss": (0.1 + 2500 * a**2 + 1000 * b**2).tolist(),
                             "radius": 0.2, "theta_norm": 10.0, "rise": 1.0, "eigenvalues": [5.0, 2.0]}}
            (folder / f"{cid}.json").write_text(json.dumps(doc))
            run["benchmarks"].append({"name": f"test_spectrum[{cid}]", "stats": {"mean": 3.0}, "extra_info": {
                "kind": "spectrum", "config_id": cid, "config": {"depth": depth, "shortcut": shortcut,
                                                                  "batch_size": 128},
                "spectrum_record": {"summary": summary, "seeds": {}, "uncertainty": {}}}})
    # an authors'-recipe net: its density is drawn with its own recipe's, not over the seed recipe's
    cid = "resnet20-sgd-wd0.0005-authors-bs128-s0"
    (folder / f"{cid}.json").write_text(json.dumps(doc))
    run["benchmarks"].append({"name": f"test_spectrum[{cid}]", "stats": {"mean": 3.0}, "extra_info": {
        "kind": "spectrum", "config_id": cid, "config": {"depth": 20, "shortcut": True, "batch_size": 128,
                                                          "init": "authors", "optimizer": "sgd"},
        "spectrum_record": {"summary": summary, "seeds": {}, "uncertainty": {}}}})
    run_path.write_text(json.dumps(run))
    out = tmp_path / "report"
    assert main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)]) == 0
    md = (out / "summary.md").read_text()
    assert "## Hessian spectra" in md and "| resnet20-noshort-bs128-s0 | 5 | 3 |" in md
    assert (out / "spectra-bs128.png").exists() and (out / "eigen-plane-resnet56-noshort-bs128-s0.png").exists()
    assert (out / "spectra-authors-bs128.png").exists() and "the authors' recipe, batch 128: the Hessian" in md
    assert "more-negative-curvature-without-skips[resnet20-bs128]" in md


def _provenance(seed, final_acc, curve):
    return {"format": "lossbench-reference-net/1", "seed": seed, "converged": final_acc >= 0.9,
            "final": {"train_acc": final_acc, "test_acc": final_acc - 0.05, "train_loss": 0.1},
            "history": [{"epoch": e + 1, "train_acc": a} for e, a in enumerate(curve)],
            "platform": {"cpu_capability": "AVX2"}, "wall_seconds": 600.0}


def test_the_training_runs_of_every_shipped_seed_are_drawn_and_tabled(tmp_path):
    """A net's seed 0 (nets/) and its further seeds (seed-nets/, not a similarly named net's): a figure per
    recipe and a row per run, the run that did not reach a minimum marked."""
    bench = fake_run(tmp_path)
    nets = tmp_path / "baselines" / "ci" / "nets"
    seeds = tmp_path / "baselines" / "ci" / "seed-nets"
    nets.mkdir()
    seeds.mkdir()
    (nets / "resnet56-noshort-bs128-s0.json").write_text(json.dumps(_provenance(0, 0.97, [0.1, 0.5, 0.9])))
    (seeds / "resnet56-noshort-bs128-s1.json").write_text(json.dumps(_provenance(1, 1.0, [0.1, 0.6, 0.99])))
    (seeds / "resnet56-noshort-bs128-s2.json").write_text(json.dumps(_provenance(2, 0.61, [0.1, 0.46, 0.13])))
    # another net whose id starts alike (channels-last, seed 1): not a seed of the one above
    (seeds / "resnet56-noshort-bs128-s1-cl.json").write_text(json.dumps(_provenance(1, 0.2, [0.1])))
    out = tmp_path / "report"
    assert main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)]) == 0
    md = (out / "summary.md").read_text()
    section = md[md.index("## Training runs"):md.index("## Metrics against baselines")]
    # seed 2 fell in its third epoch (0.46 to 0.13: lossbench.train.falls), seed 1 never did
    assert "| resnet56-noshort-bs128-s0 | 2 | 3 | 0.61 | 0.56 | NO | 3 | AVX2 | 10 |" in section
    assert "| resnet56-noshort-bs128-s0 | 1 | 3 | 1 | 0.95 | yes | none |" in section
    assert "| resnet56-noshort-bs128-s0 | 0 | 3 | 0.97 |" in section
    assert section.count("| resnet56-noshort-bs128-s0 |") == 3  # not the -cl net
    assert "resnet20-bs128-s0 |" not in section  # nothing shipped for it: no row
    assert (out / "training-seed.png").exists() and "training-seed.png" in section


def test_the_training_runs_section_is_absent_when_no_net_is_shipped(tmp_path):
    bench = fake_run(tmp_path)
    out = tmp_path / "report"
    assert main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)]) == 0
    assert "## Training runs" not in (out / "summary.md").read_text()


def test_direction_pairs_taken_from_the_baseline_are_shown_as_stored_not_failed(tmp_path):
    """The main job recomputes only the scale's pair_check pairs and takes the others from the baseline
    (``record["stored_pairs"]``): the metrics table shows them as stored, it does not count them as
    failed for having no obtained value (it called 416 of a real run's rows FAIL)."""
    bench = fake_run(tmp_path)
    path = next((bench / "Linux-CPython-3.11-64bit").glob("*.json"))
    run = json.loads(path.read_text())
    info = run["benchmarks"][0]["extra_info"]
    assert info["config_id"] == "resnet20-bs128-s0"
    info["pairs"] = [dict(info["metrics"]), {"curv_max": 3.0}]
    info["stored_pairs"] = [1]
    path.write_text(json.dumps(run))
    (tmp_path / "baselines" / "ci" / "resnet20-bs128-s0.json").write_text(json.dumps({
        "format": "lossbench-baseline/3", "source": {"commit": "x", "torch": "2.x", "device": "cpu", "date": "d"},
        "metrics": {"curv_max": {"value": 2.0, "tol": 0.1}, "curv_max/p1": {"value": 3.0, "tol": 0.1}}}))
    out = tmp_path / "report"
    assert main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)]) == 0
    md = (out / "summary.md").read_text()
    assert "| resnet20-bs128-s0 | curv_max/p1 |  | 3 |  | stored, not recomputed |" in md
    assert "| resnet20-bs128-s0 | curv_max | 2 | 2 | 0.1 | pass |" in md
    assert "1 stored from the baseline and not recomputed" in md
    assert not [line for line in md.splitlines() if "curv_max/p1" in line and "FAIL" in line]
