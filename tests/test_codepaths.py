"""Other machines' code paths, emulated in subprocesses: the variant list reaches the children (each
sees exactly its variable, in a process of its own), and a variant that silently ran in-process or
without its variable is refused rather than counted as a measurement."""

import os
import platform
import subprocess

import pytest

from lossbench import codepaths
from lossbench.codepaths import CODE_PATH_VARIABLES, CodePathError, code_path_name, code_paths, run_code_path

X86 = platform.machine() in ("x86_64", "AMD64")


def test_the_variants_follow_the_cpu():
    every = {"sse4_2", "avx2", "avx512f"}
    assert [code_path_name(e) for e in code_paths(every, "x86_64")] == [
        "MKL_CBWR=COMPATIBLE", "MKL_CBWR=SSE4_2", "MKL_CBWR=AVX2", "MKL_CBWR=AVX512", "ATEN_CPU_CAPABILITY=avx2",
        "ONEDNN_MAX_CPU_ISA=AVX2"]
    # an AVX2-only CPU (an AMD EPYC): its ATen and oneDNN defaults are the AVX2 kernels, so the branch
    # below is the scalar / SSE4.1 one
    assert [code_path_name(e) for e in code_paths({"sse4_2", "avx2"}, "x86_64")] == [
        "MKL_CBWR=COMPATIBLE", "MKL_CBWR=SSE4_2", "MKL_CBWR=AVX2", "ATEN_CPU_CAPABILITY=default",
        "ONEDNN_MAX_CPU_ISA=SSE41"]
    assert [code_path_name(e) for e in code_paths({"sse4_2"}, "x86_64")] == ["MKL_CBWR=COMPATIBLE", "MKL_CBWR=SSE4_2"]
    assert code_paths(every, "aarch64") == ()


@pytest.mark.skipif(not X86, reason="the code-path variables name x86 branches; this machine is not x86-64")
def test_every_variant_reaches_its_own_subprocess(monkeypatch):
    """Each child runs in another process, sees its variable and none of the others (even where the
    parent has one set), with one thread; ATen's variant runs the kernels it names, which are not this
    CPU's default ones (a variant equal to the default would measure nothing)."""
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")  # the parent's own setting must not leak into a child
    variants = code_paths()
    assert variants, "an x86-64 CPU takes at least MKL's COMPATIBLE branch"
    default = run_code_path({}, "probe", {})["probe"]["cpu_capability"]
    for env in variants:
        probe = run_code_path(env, "probe", {})["probe"]
        assert probe["pid"] != os.getpid()
        assert {k: probe["env"][k] for k in CODE_PATH_VARIABLES} == {k: env.get(k) for k in CODE_PATH_VARIABLES}
        assert probe["threads"] == 1
        if "ATEN_CPU_CAPABILITY" in env:
            assert probe["cpu_capability"].lower() == env["ATEN_CPU_CAPABILITY"] != default.lower()


def test_a_variant_that_ran_in_process_is_refused(monkeypatch):
    """The mutant of the runner: the job run in this process instead of a child (so under this process's
    libraries, whatever the variable says) measures nothing and must not count."""
    def in_process(argv, **kwargs):
        codepaths.main([argv[-1]])
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(codepaths.subprocess, "run", in_process)
    with pytest.raises(CodePathError, match="ran in this process, so it measured nothing"):
        run_code_path({"MKL_CBWR": "AVX2"}, "probe", {})


def test_a_variant_whose_child_did_not_see_its_variable_is_refused(monkeypatch):
    """The mutant of the environment: the child started without the variant's variable."""
    real_run = subprocess.run

    def without_env(argv, env=None, **kwargs):
        env = {k: v for k, v in (env or {}).items() if k not in CODE_PATH_VARIABLES}
        return real_run(argv, env=env, **kwargs)

    monkeypatch.setattr(codepaths.subprocess, "run", without_env)
    with pytest.raises(CodePathError, match=r"saw \{'MKL_CBWR': None"):
        run_code_path({"MKL_CBWR": "AVX2"}, "probe", {})


def test_bad_variants_and_tasks_are_refused_by_name():
    with pytest.raises(ValueError, match=r"\['OMP_NUM_THREADS'\] do not select a code path"):
        run_code_path({"OMP_NUM_THREADS": "4"}, "probe", {})
    with pytest.raises(ValueError, match="unknown code-path task 'nope'; expected one of"):
        run_code_path({}, "nope", {})


def test_a_failing_child_names_its_variant_and_its_error():
    with pytest.raises(CodePathError, match=r"the MKL_CBWR=AVX2 recompute of study failed \(exit 1\)"):
        run_code_path({"MKL_CBWR": "AVX2"}, "study", {"config": {"depth": 7}, "scale": {"name": "ci"},
                                                      "results_dir": "/nonexistent"})


@pytest.mark.skipif(not X86, reason="the code-path variables name x86 branches; this machine is not x86-64")
@pytest.mark.parametrize("variable", ["MKL_CBWR=COMPATIBLE", "MKL_CBWR=AVX2"])
def test_a_shipped_nets_hessian_on_another_code_path_passes_its_baseline(variable):
    """Another machine's arithmetic, emulated: the Hessian numbers of the shipped sharp ResNet-20 at
    batch 2000 (the trace that failed a user's first run by 67x its former tolerance) recomputed in a
    subprocess on another MKL or ATen branch, checked against the stored file at the tol tier (the same
    weights). A tolerance that holds only on the baseline machine's branch fails here."""
    from pathlib import Path

    from lossbench.baselines import TIER_TOL, compare, load_baseline
    from lossbench.codepaths import scale_job
    from lossbench.config import find_config, get_scale

    name, value = variable.split("=")
    if not any(env.get(name) == value for env in code_paths()):
        pytest.skip(f"this CPU cannot take {variable}")
    root = Path(__file__).resolve().parents[1] / "baselines"
    config = find_config("small", depth=20, shortcut=True, batch_size=2000)
    out = run_code_path({name: value}, "curvature", dict(config=config.to_dict(), scale=scale_job(get_scale("small")),
                                                           baselines_dir=str(root)))
    baseline = load_baseline(root / "small" / f"{config.config_id}.json")
    rows = [r for r in compare(out["metrics"], baseline, tier=TIER_TOL) if r.name in out["metrics"]]
    assert len(rows) == 4 and all(r.ok for r in rows), "\n".join(r.line() for r in rows)


@pytest.mark.skipif(not X86, reason="the code-path variables name x86 branches; this machine is not x86-64")
def test_atens_and_onednns_variants_compute_otherwise_than_this_cpus_default():
    """The variants CODE_PATHS picks for ATen and oneDNN are the branch below this CPU's own, so their
    arithmetic digest differs from the default's (MKL's may not: on an Intel CPU with AVX-512 its
    AVX512 branch is its default, and ``same_branch`` then counts it as the default). The mutant this
    guards against: AVX2 variants on an AVX2-only CPU, which measured nothing."""
    from lossbench.codepaths import same_branch

    twins = same_branch(code_paths())
    assert not [name for name, twin in twins.items() if twin == "default" and not name.startswith("MKL_CBWR")], twins
