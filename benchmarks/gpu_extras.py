"""Study the small scale's GPU-only nets (ResNet-110 with and without shortcuts, ResNet-56 at widths
2 and 4) next to the shipped nets they are compared with, all on one device, and write one JSON.

    python benchmarks/gpu_extras.py --device cuda -o gpu-extras.json [--baselines-dir baselines]

Each net gets what the main job measures on the matrix (study_net: the scale's direction pairs, the
Hessian at the minimum, the PCA shares), and the ResNet-56/110 nets at batch 128 their eigen-ratio
map. The nets must be shipped under baselines/small/nets/ (`python -m lossbench ship`); the file is
what `lossbench.claims` needs to judge the depth-110 and width findings (paper Figures 5 and 6).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from lossbench.config import get_scale
from lossbench.data import load_dataset
from lossbench.reference_nets import load_reference
from lossbench.reproduce import eig_map_summary, study_net

COMPARED = ("resnet56-bs128-s0", "resnet56-noshort-bs128-s0")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--baselines-dir", default="baselines")
    p.add_argument("--ids", nargs="+", default=None, help="these shipped nets instead of the default set")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args(argv)
    scale = get_scale("small")
    # ResNet-110 and the nets it is compared with first: the depth finding matters most
    ids = args.ids or [*(c.config_id for c in scale.gpu_configs if c.width == 1), *COMPARED,
                       *(c.config_id for c in scale.gpu_configs if c.width != 1)]
    out: dict = {"format": "lossbench-gpu-extras/1", "scale": scale.name, "device": args.device,
                 "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                 "torch": torch.__version__, "nets": {}, "eig_maps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for config_id in ids:
            try:
                net = load_reference(config_id, args.baselines_dir, scale.name, device=args.device)
            except Exception as exc:  # noqa: BLE001 - a net not trained in time is reported, not fatal
                print(f"skip {config_id}: {exc}", flush=True)
                continue
            t0 = time.perf_counter()
            data = load_dataset(net.config)
            record, flat = study_net(net.config, scale, net=net, data=data, results_dir=tmp, progress=False,
                                     log=lambda line: print(line, flush=True))
            record["metrics"] = flat
            out["nets"][config_id] = record
            if net.config.width == 1:
                _, summary = eig_map_summary(Path(tmp) / f"{config_id}-eig.h5", net.model, data, scale)
                out["eig_maps"][config_id] = summary
            print(f"{config_id}: done in {time.perf_counter() - t0:.0f} s", flush=True)
            Path(args.output).write_text(json.dumps(out, indent=2, sort_keys=True, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
