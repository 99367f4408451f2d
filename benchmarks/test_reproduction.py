"""The reproduction: for every net of the scale, time the grid evaluation, measure what the paper's
claims need (surfaces on the scale's direction pairs, the curvature at the minimum, the PCA of the
path, the 1D lines of the filter-normalisation experiment), check the metrics against
baselines/<scale>/, and save everything the report needs in extra_info. The scale's ``pair_check``
first pairs are recomputed; the others are the baseline's values for the same weights
(``--lossbench-all-pairs`` recomputes them). All but the timed first pair may run in a helper process
(``--lossbench-jobs``).

    pytest benchmarks --lossbench-scale small --benchmark-autosave   # the shipped reference nets
    pytest benchmarks --benchmark-autosave                           # ci: retrains the matrix
"""

import math
import platform
import time

import pytest
import torch

from lossbench.baselines import uncertainty_context
from lossbench.parallel import unit_key
from lossbench.reproduce import compute_config_surface, not_recomputed, stored_pairs, study_net, study_rest

from _timing import float32_sha, mean_seconds


@pytest.mark.study(kind="nets", part="rest")  # all but the timed first pair may run in a helper process
def test_reproduction(benchmark, run_config, trained, lossbench_data, lossbench_scale, lossbench_results_dir,
                      lossbench_baseline, lossbench_baseline_doc, lossbench_device, lossbench_records,
                      lossbench_progress, lossbench_helpers, pytestconfig):
    path = lossbench_results_dir / run_config.config_id / "surface-2d-p0.h5"
    benchmark.group = f"reproduction:{lossbench_scale.name}"

    t0 = time.perf_counter()
    surface = benchmark.pedantic(
        compute_config_surface, args=(path, trained.model, lossbench_data, run_config, lossbench_scale),
        rounds=1, iterations=1, warmup_rounds=0,
    )
    wall = time.perf_counter() - t0
    seconds = mean_seconds(benchmark)
    if math.isnan(seconds):  # --benchmark-disable: nothing timed by the plugin, the wall clock is the time
        seconds = wall
    lossbench_progress(f"{run_config.config_id}: surface, direction pair 1 ({seconds:.0f} s)")
    doc = lossbench_baseline_doc(run_config.config_id)
    # the scale's pair_check: pairs beyond it come from the baseline where it was measured on these weights
    stored = {} if pytestconfig.getoption("lossbench_all_pairs") else stored_pairs(
        doc, weights_sha256=float32_sha(trained), scale=lossbench_scale)
    rest = lossbench_helpers.take(
        unit_key("nets", run_config.config_id),
        lambda: study_rest(run_config, lossbench_scale, net=trained, data=lossbench_data,
                           results_dir=lossbench_results_dir, stored=stored, log=lossbench_progress),
        say=lossbench_progress, label=f"{run_config.config_id}: the study after direction pair 1")
    record, metrics = study_net(run_config, lossbench_scale, net=trained, data=lossbench_data,
                                results_dir=lossbench_results_dir, first_surface=surface, rest=rest)
    root = lossbench_results_dir.parent.parent
    if "lines" in record:
        record["line_paths"] = {norm: [str((lossbench_results_dir / run_config.config_id / f"line-{norm}-p{k}.h5")
                                           .relative_to(root)) for k in range(len(per))]
                                for norm, per in record["lines"].items()}
    # the other training seeds' numbers and each number's sampling and numerical error, for the claims
    record.update(uncertainty_context(doc))
    lossbench_records["nets"][run_config.config_id] = record
    points = int(surface.done.size)
    eval_samples = min(lossbench_scale.eval_samples, len(lossbench_data.x_train))
    benchmark.extra_info.update(
        config_id=run_config.config_id, config=run_config.to_dict(), scale=lossbench_scale.name,
        grid=list(surface.shape), points=points, eval_samples=eval_samples, engine=lossbench_scale.engine,
        seconds_per_point=seconds / points, images_per_second=points * eval_samples / seconds,
        metrics=metrics, curvature=record["curvature_details"], final=dict(trained.final),
        converged=record["converged"], record=record,
        history=[{k: r[k] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")} for r in trained.history],
        surface_path=str(path.relative_to(root)),
        surface_paths=[str((lossbench_results_dir / run_config.config_id / f"surface-2d-p{k}.h5").relative_to(root))
                       for k in range(lossbench_scale.dir_pairs) if k not in record["stored_pairs"]],
        device=str(lossbench_device), torch=str(torch.__version__), python=platform.python_version(),
        torch_threads=torch.get_num_threads(), helper_processes=len(lossbench_helpers.procs),
    )
    lossbench_baseline(run_config.config_id, metrics, config_hash=run_config.config_hash,
                       weights_sha256=float32_sha(trained),
                       extra={"final": dict(trained.final), "converged": record["converged"]},
                       not_recomputed=not_recomputed(record))
