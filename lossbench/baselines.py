"""Baselines: stored metric values with tolerances, compared the way pytest-regressions does it.

Layout: ``baselines/<scale>/<config_id>.json``, sorted keys, indent 2, final newline::

    {"config_id": ..., "scale": ..., "config_hash": ...,
     "metrics": {"curv_max": {"value": 1.2345, "rtol": 0.0, "atol": 0.05, "source": {...}}, ...},
     "tolerance_method": "..."}

A metric passes when ``|obtained - value| <= atol + rtol * |value|`` (``math.isclose`` semantics).
Every metric is compared before anything fails; the message lists expected +- tol, obtained and the
relative difference of each, and ``<config_id>.obtained.json`` is written beside the baseline.
A missing baseline is created and fails ("review and commit"); ``regen`` rewrites a differing file
(tolerances kept) and still fails; ``regen_all`` rewrites and passes.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import write_text_atomic

#: Floors of the tolerance per metric kind (absolute, in the metric's unit): the band that float and
#: thread-count differences alone may move a metric on one config. Measured spread is added on top.
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {
    "loss": {"rtol": 1e-4, "atol": 1e-5},  # loss_center (nats)
    "acc": {"rtol": 0.0, "atol": 0.0025},  # acc_center (fraction; one image in 400)
    "curv": {"rtol": 1e-3, "atol": 1e-4},
    "sharpness": {"rtol": 1e-3, "atol": 1e-3},
    "basin": {"rtol": 1e-3, "atol": 1e-4},
    "fraction": {"rtol": 0.0, "atol": 1e-9},  # nonconvex_fraction: a count ratio
    "count": {"rtol": 0.0, "atol": 0.0},  # local_minima
    "roughness": {"rtol": 1e-4, "atol": 1e-6},
    "other": {"rtol": 1e-4, "atol": 1e-6},
}
SPREAD_FACTOR = 3.0  # tolerance = floor + 3 x the sample standard deviation over seeds


def metric_kind(name: str) -> str:
    """The tolerance class of a metric name."""
    if name.startswith("loss"):
        return "loss"
    if name.startswith("acc"):
        return "acc"
    if name.startswith(("curv", "lam_", "trace")):
        return "curv"
    if name.startswith("sharpness"):
        return "sharpness"
    if name.startswith("basin"):
        return "basin"
    if name.endswith("fraction"):
        return "fraction"
    if name == "local_minima":
        return "count"
    if name == "roughness":
        return "roughness"
    return "other"


def default_tolerance(name: str) -> dict[str, float]:
    return dict(DEFAULT_TOLERANCES[metric_kind(name)])


def round_sig(x: float, digits: int = 6) -> float:
    """``x`` rounded to ``digits`` significant digits (baselines are reviewed in diffs)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def provenance(device: str = "cpu") -> dict[str, str]:
    """Where a baseline value came from: commit, torch version, device, date."""
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    if device.startswith("cuda") and torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    return {"commit": commit, "torch": str(torch.__version__), "device": device,
            "date": _dt.date.today().isoformat()}


@dataclass(frozen=True)
class Row:
    """One metric's comparison."""

    name: str
    expected: float | None
    tol: float
    obtained: float | None
    ok: bool

    @property
    def rel_diff(self) -> float:
        if self.expected is None or self.obtained is None:
            return math.nan
        return abs(self.obtained - self.expected) / max(abs(self.expected), 1e-12)

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        exp = "missing" if self.expected is None else f"{self.expected:.6g} ± {self.tol:.3g}"
        got = "missing" if self.obtained is None else f"{self.obtained:.6g}"
        return f"  {mark} {self.name:<22} expected {exp:<24} obtained {got:<12} rel diff {self.rel_diff:.2e}"


def compare(obtained: Mapping[str, float], baseline: Mapping[str, Any]) -> list[Row]:
    """Compare every metric (union of both sides) and return one :class:`Row` each, sorted by name."""
    stored = baseline.get("metrics", {})
    rows = []
    for name in sorted(set(stored) | set(obtained)):
        entry = stored.get(name)
        got = obtained.get(name)
        if entry is None or got is None:
            rows.append(Row(name, None if entry is None else entry["value"], 0.0, got, False))
            continue
        value, rtol, atol = float(entry["value"]), float(entry["rtol"]), float(entry["atol"])
        tol = atol + rtol * abs(value)
        if math.isnan(value) or math.isnan(got):  # NaN: "no answer" (e.g. an unconverged solve) on both sides
            ok = math.isnan(value) and math.isnan(got)
        else:
            ok = abs(got - value) <= tol + 1e-15
        rows.append(Row(name, value, tol, float(got), ok))
    return rows


class BaselineMismatch(AssertionError):
    """Raised when a check fails; its message is the whole comparison table."""


@dataclass(frozen=True)
class Outcome:
    status: str  # passed | failed | created | updated
    path: Path
    rows: tuple[Row, ...] = ()
    message: str = ""


def write_baseline(path: Path, data: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def make_baseline(config_id: str, scale: str, metrics: Mapping[str, float], *, source: Mapping[str, str],
                  tolerances: Mapping[str, Mapping[str, float]] | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A baseline document with rounded values and per-metric tolerances (defaults where not given)."""
    entries = {}
    for name, value in metrics.items():
        tol = dict(tolerances[name]) if tolerances and name in tolerances else default_tolerance(name)
        entries[name] = {"value": round_sig(float(value)), "rtol": round_sig(tol["rtol"], 3),
                         "atol": round_sig(tol["atol"], 3), "source": dict(source)}
    return {"config_id": config_id, "scale": scale, "metrics": entries, **(extra or {})}


def check(path: str | Path, obtained: Mapping[str, float], *, config_id: str, scale: str,
          source: Mapping[str, str], regen: bool = False, regen_all: bool = False,
          extra: Mapping[str, Any] | None = None) -> Outcome:
    """Check ``obtained`` against the baseline file at ``path`` (see the module docstring).

    Returns an :class:`Outcome`; the caller decides how to fail (the pytest plugin raises
    :class:`BaselineMismatch` for ``failed``, ``created`` and ``updated`` unless ``regen_all``).
    """
    path = Path(path)
    obtained_path = path.with_name(f"{path.stem}.obtained.json")
    if not path.exists():
        write_baseline(path, make_baseline(config_id, scale, obtained, source=source, extra=extra))
        return Outcome("created", path, message=f"created baseline {path}; review and commit it")
    try:
        baseline = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BaselineMismatch(f"baseline {path} is not valid JSON ({exc}); fix or delete it") from exc
    rows = tuple(compare(obtained, baseline))
    if all(r.ok for r in rows):
        obtained_path.unlink(missing_ok=True)
        return Outcome("passed", path, rows)
    table = "\n".join(r.line() for r in rows)
    n_bad = sum(not r.ok for r in rows)
    if regen or regen_all:
        kept = {k: v for k, v in baseline.get("metrics", {}).items()}
        tolerances = {k: {"rtol": v["rtol"], "atol": v["atol"]} for k, v in kept.items()}
        new = make_baseline(config_id, scale, obtained, source=source, tolerances=tolerances,
                            extra={k: v for k, v in baseline.items() if k not in ("config_id", "scale", "metrics")})
        write_baseline(path, new)
        obtained_path.unlink(missing_ok=True)
        status = "passed" if regen_all else "updated"
        return Outcome(status, path, rows, f"rewrote {path} ({n_bad} metric(s) differed):\n{table}")
    write_baseline(obtained_path, make_baseline(config_id, scale, obtained, source=source))
    return Outcome("failed", path, rows,
                   f"{n_bad} of {len(rows)} metrics differ from {path} (obtained values in {obtained_path.name}):\n{table}")


def spread_tolerances(samples: Mapping[str, list[float]], *, factor: float = SPREAD_FACTOR) -> dict[str, dict[str, float]]:
    """Tolerances from measured spread: ``atol = floor + factor * sample std`` over seeds, rtol the floor's.

    Args:
        samples: metric name -> values over (training seed x direction seed) combinations.
    """
    out = {}
    for name, values in samples.items():
        floor = default_tolerance(name)
        finite = [v for v in values if math.isfinite(v)]
        sd = float(_std(finite)) if len(finite) > 1 else 0.0
        out[name] = {"rtol": floor["rtol"], "atol": floor["atol"] + factor * sd}
    return out


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def load_paper_numbers(root: str | Path) -> dict[str, Any]:
    """``baselines/paper/published.json``: the paper's numbers with their source."""
    path = Path(root) / "paper" / "published.json"
    return json.loads(path.read_text())
