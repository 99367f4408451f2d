"""Root conftest: loads the lossbench plugin and registers the Hypothesis profiles."""

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["lossbench.pytest_plugin"]

# dev: quick local runs. ci: reproducible (derandomised) and without per-example deadlines, since
# torch's first calls are slow and a deadline would make the suite flaky.
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
