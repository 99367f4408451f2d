"""Bad input on the command line: each case exits 2 with one line that names the problem and what
would be right, and writes no output file (issue "Nothing lost, nothing mixed, nothing run")."""

from pathlib import Path

import pytest

from lossbench.__main__ import main

SHIPPED = ["--scale", "small", "--arch", "resnet20"]  # a shipped reference net: nothing is trained

CASES = [
    # (argv, expected words in the one-line error)
    (["surface", *SHIPPED, "--x", "-1:1:3", "--eval-samples", "-5"], "eval_samples=-5: expected a positive number"),
    (["surface", *SHIPPED, "--x", "-1:1:3", "--eval-samples", "1000000"],
     "eval_samples=1000000 but the train split holds 8000 images; expected 1 to 8000"),
    (["surface", *SHIPPED, "--x", "-1:inf:3"], "min and max must be finite"),
    (["surface", *SHIPPED, "--x", "1:-1:3"], "need num >= 1 and max > min"),
    (["surface", *SHIPPED, "--x", "-1:1:20000", "--y", "-1:1:20000"], "at most 10001 points per axis"),
    (["surface", *SHIPPED, "--x", "1:2"], "expected min:max:num"),
    (["hessian", *SHIPPED, "--max-iter", "0"], "--max-iter 0: expected at least 1 Lanczos step"),
    (["hessian", *SHIPPED, "--eval-samples", "-3"], "--eval-samples -3: expected 1 to 8000"),
    (["surface", *SHIPPED, "--x", "-1:1:3", "--device", "nonsense"],
     "unknown device 'nonsense'; expected cpu, cuda or cuda:N"),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(c[0][:1] + c[0][5:]) for c in CASES])
def test_bad_input_is_one_clear_line(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)  # the CLI finds the shipped nets under ./baselines
    out = tmp_path / "out.h5"
    try:
        code = main([*argv, "-o", str(out)] if argv[0] == "surface" else argv)
    except SystemExit as exc:  # argparse's own errors exit 2 too
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert words in err[-1], err
    assert not out.exists() and list(tmp_path.iterdir()) == []
