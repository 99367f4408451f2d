"""The reproduction: for every config of the scale, time the grid evaluation, compute the surface's
metrics, check them against baselines/<scale>/, and save everything the report needs in extra_info.

    pytest benchmarks --benchmark-autosave                      # ci scale
    pytest benchmarks --lossbench-scale small --benchmark-autosave
"""

import platform

import torch

from lossbench.reproduce import compute_config_surface, converged, suite_metrics

from _timing import mean_seconds


def test_reproduction(benchmark, run_config, trained, lossbench_data, lossbench_scale, lossbench_results_dir,
                      lossbench_baseline, lossbench_device):
    path = lossbench_results_dir / run_config.config_id / "surface-2d.h5"
    benchmark.group = f"reproduction:{lossbench_scale.name}"

    surface = benchmark.pedantic(
        compute_config_surface, args=(path, trained.model, lossbench_data, run_config, lossbench_scale),
        rounds=1, iterations=1, warmup_rounds=0,
    )
    metrics, curvature = suite_metrics(surface, trained.model, lossbench_data, checkpoints=trained.checkpoints)
    points = int(surface.done.size)
    seconds = mean_seconds(benchmark)
    eval_samples = min(lossbench_scale.eval_samples, len(lossbench_data.x_train))
    benchmark.extra_info.update(
        config_id=run_config.config_id, config=run_config.to_dict(), scale=lossbench_scale.name,
        grid=list(surface.shape), points=points, eval_samples=eval_samples,
        seconds_per_point=seconds / points, images_per_second=points * eval_samples / seconds,
        metrics=metrics, curvature=curvature, final=trained.final, converged=converged(trained.final),
        history=[{k: r[k] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")} for r in trained.history],
        surface_path=str(path.relative_to(lossbench_results_dir.parent.parent)),
        device=str(lossbench_device), torch=str(torch.__version__), python=platform.python_version(),
    )
    lossbench_baseline(run_config.config_id, metrics)
