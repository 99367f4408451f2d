"""The plugin's session summary, run as a user's pytest session would (pytester): every baseline file
it checked is counted, the claims' verdict file included; unused files are found in every folder the
session used (``eigmap/`` too; never the shipped nets' provenance) and reported only for a whole run;
a regeneration counts as updated."""

from __future__ import annotations

import json

from lossbench.baselines import check_verdicts, make_baseline, provenance, write_baseline

pytest_plugins = ["pytester"]

INNER = '''
def test_metrics(lossbench_baseline):
    lossbench_baseline("net-a", {"curv_max": 2.0})
    lossbench_baseline("eigmap/net-c", {"curv_max": 2.0})


def test_claims(lossbench_verdicts):
    lossbench_verdicts({"claim": "holds"}, {"net-a": True})
'''


def _baselines(root):
    # the plugin comes in by its pytest11 entry point; its summary is the suite's, switched on by the ini
    (root / "pytest.ini").write_text("[pytest]\nlossbench_suite = true\n")
    ci = root / "baselines" / "ci"
    for name, where in (("net-a", ci), ("net-b", ci / "eigmap"), ("net-c", ci / "eigmap")):
        where.mkdir(parents=True, exist_ok=True)
        config_id = name if where == ci else f"eigmap/{name}"  # as the fixture names a file in eigmap/
        write_baseline(where / f"{name}.json", make_baseline(config_id, "ci", {"curv_max": 2.0}, source=provenance("cpu"),
                                                            tolerances={"curv_max": 0.01}))
    (ci / "nets").mkdir()
    (ci / "nets" / "net-a.json").write_text(json.dumps({"provenance": "not a baseline"}))
    check_verdicts(ci / "claims.json", {"claim": "holds"}, {"net-a": True}, source=provenance())
    return ci


def test_summary_counts_the_claims_file_and_finds_unused_files_recursively(pytester):
    ci = _baselines(pytester.path)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("--lossbench-baselines-dir",
                                          str(pytester.path / "baselines"))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["baselines: 3 passed, 0 failed, 0 created, 0 updated, 1 unused",
                                 f"  unused: {(ci / 'eigmap' / 'net-b.json').resolve()}"])
    assert "claims.json" not in result.stdout.str().split("baselines:")[1]
    assert "nets" not in result.stdout.str().split("baselines:")[1]


def test_a_partial_run_does_not_count_unused_files(pytester):
    _baselines(pytester.path)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-k", "metrics", "--lossbench-baselines-dir", str(pytester.path / "baselines"))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["baselines: 2 passed, 0 failed, 0 created, 0 updated, unused not counted (partial run)"])


def test_a_changed_verdict_fails_and_regen_all_counts_as_updated(pytester):
    ci = _baselines(pytester.path)
    pytester.makepyfile(test_inner=INNER.replace('"holds"}', '"fails"}'))
    base = ["--lossbench-baselines-dir", str(pytester.path / "baselines")]
    failed = pytester.runpytest_inprocess(*base)
    failed.assert_outcomes(passed=1, failed=1)
    failed.stdout.fnmatch_lines(["baselines: 2 passed, 1 failed, 0 created, 0 updated*"])
    regen = pytester.runpytest_inprocess(*base, "--lossbench-regen-all")
    regen.assert_outcomes(passed=2)
    regen.stdout.fnmatch_lines(["baselines: 2 passed, 0 failed, 0 created, 1 updated*"])
    assert json.loads((ci / "claims.json").read_text())["verdicts"]["claim"] == "fails"
