"""Stand-ins for what a helper process computes (tests/test_parallel.py runs them in real helpers)."""

import os
import time


def echo(unit):
    time.sleep(0.3)
    return ("helper", unit.key)


def fail_on_b(unit):
    if unit.key == "b":
        raise RuntimeError("unit b is broken")
    return ("helper", unit.key)


def die_on_b(unit):
    if unit.key == "b":
        os._exit(3)
    time.sleep(0.3)
    return ("helper", unit.key)


def threads(unit):
    import torch

    return ("helper", torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"))
