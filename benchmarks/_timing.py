"""Shared by the benchmark modules (imported as a sibling module: pytest puts this folder on sys.path)."""


def mean_seconds(benchmark) -> float:
    """Mean time of the timed rounds; NaN under --benchmark-disable (nothing was timed)."""
    return benchmark.stats.stats.mean if benchmark.stats else float("nan")
