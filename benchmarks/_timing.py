"""Shared by the benchmark modules (imported as a sibling module: pytest puts this folder on sys.path)."""


def mean_seconds(benchmark) -> float:
    """Mean time of the timed rounds; NaN under --benchmark-disable (nothing was timed)."""
    return benchmark.stats.stats.mean if benchmark.stats else float("nan")


def run_on_request(pytestconfig, name: str, what: str) -> None:
    """Skip a timing-only benchmark unless asked for: ``-k <name>`` or ``--lossbench-speed``. The main
    job (`pytest benchmarks`) is the reproduction and must fit its 15 minutes (on a GPU, about two)."""
    import pytest

    if not (pytestconfig.getoption("lossbench_speed") or name in (pytestconfig.getoption("keyword") or "")):
        pytest.skip(f"{what} runs on request: pytest benchmarks -k {name} (or --lossbench-speed)")


def float32_sha(net) -> str:
    """sha256 of a net's weights as trained (float32), also when --lossbench-dtype float64 evaluates
    them in double: a shipped net's stored hash, else the hash of its state."""
    from lossbench.reference_nets import state_sha256

    return getattr(net, "state_sha256", None) or state_sha256(
        {k: v.float() if v.is_floating_point() else v for k, v in net.model.state_dict().items()})
