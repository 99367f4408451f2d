"""Print the documentation's tables of trained nets as Markdown.

    python benchmarks/summarize_nets.py small    # the shipped reference nets, their seed spread, Table 1
    python benchmarks/summarize_nets.py ci       # the ci matrix as recorded in baselines/ci/*.json

The small table reads the provenance of seed 0 (``baselines/small/nets``), of seeds 1 and 2
(``seed-nets``) and of the GPU-only nets (``gpu-nets``): per config the test error of seed 0 with its
binomial error over the test images, the train and test errors' mean and sd over the training seeds
shipped (each seed's value in brackets, seed 0 first), and the paper's
Table 1 error where the config corresponds (same depth and shortcut; theirs: CIFAR-10, SGD, batch 128).
"""

import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "baselines"


def _model(config: dict) -> str:
    return f"resnet{config['depth']}{'' if config['shortcut'] else '-noshort'}"


def _over_seeds(errors: list[float]) -> str:
    """Mean ± sd over the training seeds in percent, each seed's value in brackets (seed 0 first)."""
    if len(errors) < 2:
        return "seed 0 only"
    each = ", ".join(f"{100 * e:.1f}" for e in errors)
    return f"{100 * statistics.mean(errors):.2f} ± {100 * statistics.stdev(errors):.2f} % [{each}]"


def small() -> None:
    published = json.loads((ROOT / "paper" / "published.json").read_text())["test_error_percent"]
    seeds: dict[str, list[dict]] = {}
    for path in sorted((ROOT / "small" / "seed-nets").glob("*.json")):
        p = json.loads(path.read_text())
        seeds.setdefault(p["config_id"].rsplit("-s", 1)[0], []).append(p)
    print("| net | recipe | train error, seed 0 | train error over seeds (mean ± sd [per seed]) | test error, seed 0 "
          "| test error over seeds (mean ± sd [per seed]) | paper's Table 1 | reached a minimum (all seeds) "
          "| PCA top-2 share | trained on | training (sum of epochs) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    paths = sorted((ROOT / "small" / "nets").glob("*.json")) + sorted((ROOT / "small" / "gpu-nets").glob("*.json"))
    for path in paths:
        p = json.loads(path.read_text())
        f, config = p["final"], p["config"]
        err = 1 - f["test_acc"]
        n_test = config["n_test"]
        binomial = math.sqrt(err * (1 - err) / n_test)
        others = seeds.get(p["config_id"].rsplit("-s", 1)[0], [])
        errors = [err] + [1 - o["final"]["test_acc"] for o in others]
        train_errors = [1 - f["train_acc"]] + [1 - o["final"]["train_acc"] for o in others]
        paper = published.get(_model(config)) if p["recipe"] == "seed" and config["batch_size"] == 128 else None
        converged = p["converged"] and all(o["converged"] for o in others)
        share = sum(p["pca_explained_variance_ratio"][:2])
        where = "CPU, 1 thread" if str(p.get("device", "cpu")).startswith("cpu") else p.get("device_name", p["device"])
        minutes = sum(row["seconds"] for row in p["history"]) / 60
        weights = "" if path.parent.name == "nets" else " (weights not shipped)"
        print(f"| {p['config_id']}{weights} | {p['recipe']} | {100 * train_errors[0]:.2f} % | "
              f"{_over_seeds(train_errors)} | {100 * err:.2f} ± {100 * binomial:.2f} % | {_over_seeds(errors)} | "
              f"{'' if paper is None else f'{paper:g} %'} | "
              f"{'yes' if converged else 'no'} | {share:.1%} | {where} | {minutes:.1f} min |")


def ci() -> None:
    print("| config | final train loss | train acc | test acc | reached a minimum |")
    print("|---|---|---|---|---|")
    for path in sorted((ROOT / "ci").glob("*.json")):
        if path.name.endswith(".obtained.json"):
            continue
        b = json.loads(path.read_text())
        f = b["final"]
        print(f"| {b['config_id']} | {f['train_loss']:.4g} | {f['train_acc']:.3f} | {f['test_acc']:.3f} | "
              f"{'yes' if b['converged'] else 'no'} |")


if __name__ == "__main__":
    {"small": small, "ci": ci}[sys.argv[1] if len(sys.argv) > 1 else "small"]()
