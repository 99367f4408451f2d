"""Root conftest: the Hypothesis profiles (the lossbench plugin loads through its pytest11 entry point)."""

import os

from hypothesis import HealthCheck, settings

# dev: quick local runs. ci: reproducible (derandomised) and without per-example deadlines, since
# torch's first calls are slow and a deadline would make the suite flaky.
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
