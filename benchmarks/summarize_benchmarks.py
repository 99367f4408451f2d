"""One line per benchmark of pytest-benchmark JSON files (``--benchmark-json`` or ``.benchmarks/``).

    python benchmarks/summarize_benchmarks.py FILE.json [FILE.json ...]

Columns: group, name, mean seconds ± sd (rounds), then the extra_info figures that say how fast and
how exact: points/s, GFLOP/s or TFLOP/s, share of peak, projected 51x51 minutes, differences from
the float32 reference.
"""

from __future__ import annotations

import json
import sys

FIELDS = [("points_per_second", "pt/s", "{:.1f}"), ("gflops", "GFLOP/s", "{:.0f}"), ("tflops", "TFLOP/s", "{:.1f}"),
          ("share_of_peak", "peak", "{:.1%}"), ("projected_51x51_minutes", "51x51 min", "{:.2f}"),
          ("seconds_per_point", "s/pt", "{:.4f}"), ("rel_diff_vs_reference", "rel.diff", "{:.1e}"),
          ("rel_diff_vs_float32", "rel.diff f32", "{:.1e}"), ("acc_count_diff", "acc.diff", "{}"),
          ("acc_count_diff_vs_float32", "acc.diff f32", "{}")]


def lines(path: str) -> list[str]:
    data = json.loads(open(path).read())
    out = [f"# {path}: {data.get('machine_info', {}).get('gpu') or data.get('machine_info', {}).get('cpu', {}).get('brand_raw', '')}"]
    for b in sorted(data["benchmarks"], key=lambda b: (b.get("group") or "", b["name"])):
        st, info = b["stats"], b.get("extra_info", {})
        figures = [f"{label} {fmt.format(info[key])}" for key, label, fmt in FIELDS if info.get(key) is not None]
        out.append(f"{b.get('group')} | {b['name']} | {st['mean']:.4f} ± {st['stddev']:.4f} s (n={st['rounds']}) | "
                   + ", ".join(figures))
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for path in sys.argv[1:]:
        print("\n".join(lines(path)))
