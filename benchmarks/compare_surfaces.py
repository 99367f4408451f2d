"""Compare surface files point by point against a reference file (the agreement check of the engines).

    python benchmarks/compare_surfaces.py REFERENCE.h5 OTHER.h5 [OTHER.h5 ...]

Prints, per file, the largest relative loss difference and the number of grid points whose accuracy
count differs, for every split both files hold. Exit status 1 if a file is on another grid.
"""

from __future__ import annotations

import sys

import numpy as np

from lossbench.store import load_surface


def compare(reference: str, other: str) -> list[str]:
    ref, out = load_surface(reference), load_surface(other)
    if ref.shape != out.shape or not np.array_equal(ref.alphas, out.alphas):
        raise SystemExit(f"{other} is on grid {out.shape}, {reference} on {ref.shape}: not comparable")
    n = ref.attrs.get("eval_samples", {})
    lines = []
    for key in sorted(k for k in ref.values if k.endswith("_loss") and k in out.values):
        split = key[: -len("_loss")]
        rel = np.abs(out.values[key] - ref.values[key]) / np.abs(ref.values[key])
        acc = f"{split}_acc"
        count = n.get(split, 1) if isinstance(n, dict) else 1
        acc_diff = np.rint(np.abs(out.values[acc] - ref.values[acc]) * count)
        lines.append(f"{other} vs {reference}: {split}: max rel loss diff {np.nanmax(rel):.2e} "
                     f"(median {np.nanmedian(rel):.1e}); accuracy counts differ at {int((acc_diff > 0).sum())} "
                     f"of {rel.size} points (max {int(np.nanmax(acc_diff))} of {count} images)")
    return lines


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    for path in sys.argv[2:]:
        print("\n".join(compare(sys.argv[1], path)))
