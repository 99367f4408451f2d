"""Print the README's tables of trained nets as Markdown.

    python benchmarks/summarize_nets.py small    # the shipped reference nets (baselines/small/nets/*.json)
    python benchmarks/summarize_nets.py ci       # the ci matrix as recorded in baselines/ci/*.json
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "baselines"


def main(scale: str) -> None:
    if scale == "small":
        print("| net | recipe | final train loss | train acc | test acc | reached a minimum | PCA top-2 share | "
              "trained on | training (sum of epochs) |")
        print("|---|---|---|---|---|---|---|---|---|")
        paths = sorted((ROOT / scale / "nets").glob("*.json")) + sorted((ROOT / scale / "gpu-nets").glob("*.json"))
        for path in paths:
            p = json.loads(path.read_text())
            f = p["final"]
            share = sum(p["pca_explained_variance_ratio"][:2])
            where = "CPU, 1 thread" if p.get("device", "cpu") == "cpu" else p.get("device_name", p["device"])
            minutes = sum(row["seconds"] for row in p["history"]) / 60
            weights = "" if path.parent.name == "nets" else " (weights not shipped)"
            print(f"| {p['config_id']}{weights} | {p['recipe']} | {f['train_loss']:.3g} | {f['train_acc']:.4f} | "
                  f"{f['test_acc']:.4f} | {'yes' if p['converged'] else 'no'} | {share:.1%} | {where} | "
                  f"{minutes:.1f} min |")
    else:
        print("| config | final train loss | train acc | test acc | reached a minimum |")
        print("|---|---|---|---|---|")
        for path in sorted((ROOT / scale).glob("*.json")):
            if path.name.endswith(".obtained.json"):
                continue
            b = json.loads(path.read_text())
            f = b["final"]
            print(f"| {b['config_id']} | {f['train_loss']:.4g} | {f['train_acc']:.3f} | {f['test_acc']:.3f} | "
                  f"{'yes' if b['converged'] else 'no'} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "small")
