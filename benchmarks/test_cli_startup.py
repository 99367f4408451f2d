"""How fast the command line answers ``--help`` and a mistyped option: torch is imported only by the
sub-commands that run something (issue 24 asks for under a second on the 2-core dev machine).

    pytest benchmarks -k cli_startup --benchmark-autosave

Three rounds of a fresh ``python -m lossbench surface --help`` process each; speed is reported, never
asserted (``tests/test_cli.py`` checks that the parser imports no torch, which is what makes it fast).
"""

import subprocess
import sys

import pytest

from _timing import mean_seconds


@pytest.mark.parametrize("argv", [["surface", "--help"], ["surfce"], ["hessian", "--bogus"]],
                         ids=["surface-help", "mistyped-command", "unknown-option"])
def test_cli_startup(benchmark, argv):
    benchmark.group = "cli:startup"

    def run():
        return subprocess.run([sys.executable, "-m", "lossbench", *argv], capture_output=True, text=True, timeout=120)

    done = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert done.returncode == (0 if "--help" in argv else 2), done.stderr
    benchmark.extra_info.update(kind="cli-startup", argv=argv, seconds=mean_seconds(benchmark))
