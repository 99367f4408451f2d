import pytest

from lossbench.__main__ import main


def test_train_prints_checkpoint_and_losses(tmp_path, capsys):
    rc = main(["train", "--arch", "resnet20", "--scale", "ci", "--epochs", "1", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "resnet20-bs128-s0" in out and "epoch-0001.pt" in out and str(tmp_path) in out
    rc = main(["train", "--arch", "resnet20", "--scale", "ci", "--epochs", "1", "--cache-dir", str(tmp_path)])
    assert rc == 0 and "(cached)" in capsys.readouterr().out
    # the NHWC opt-in is a config of its own: trained anew, never the cached default net
    rc = main(["train", "--arch", "resnet20", "--scale", "ci", "--epochs", "1", "--cache-dir", str(tmp_path),
               "--channels-last"])
    out = capsys.readouterr().out
    assert rc == 0 and "resnet20-bs128-s0-cl " in out and "(cached)" not in out


def test_train_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "python -m lossbench train --arch resnet56 --no-shortcut" in capsys.readouterr().out


def test_bad_model_name_is_an_error_not_a_traceback(tmp_path, capsys):
    rc = main(["train", "--arch", "resnet21", "--cache-dir", str(tmp_path)])
    assert rc == 2 and "resnet21" in capsys.readouterr().err


def test_the_parser_imports_no_torch():
    """--help and argument errors answer in a fraction of a second because building and running the
    parser imports no torch (it took ~8 s of imports before; benchmarks/test_cli_startup.py times it)."""
    import subprocess
    import sys

    code = ("import sys; from lossbench.__main__ import build_parser; p = build_parser(); "
            "p.parse_args(['surface', '--x=-1:1:5', '--y=-1:1:5', '-v', '--dtype', 'float64']); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("argv", [["surface", "-v", "--x", "1:2"], ["-v", "surface", "--x", "1:2"],
                                  ["surface", "--seed", "-1"], ["surface", "--checkpoint-seconds", "-1"],
                                  ["train", "--only", "x"], ["ship", "--scale", "small", "--only", "nope"],
                                  ["train", "--test-every", "0"]])
def test_usage_errors_exit_2_and_v_goes_anywhere(argv, capsys):
    """Every usage or input error exits 2 (1 is for a run that failed, e.g. a full disk), and -v is taken
    before or after the sub-command."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2, capsys.readouterr().err


@pytest.mark.parametrize("command", [["train", "--all"], ["baselines"], ["ship"]])
def test_only_takes_config_ids_separated_by_spaces_or_commas(command):
    from lossbench.__main__ import _flat_ids, build_parser

    args = build_parser().parse_args([*command, "--only", "resnet20-bs128-s0,resnet56-bs128-s0", "resnet20-bs2000-s0"])
    assert _flat_ids(args.only) == ["resnet20-bs128-s0", "resnet56-bs128-s0", "resnet20-bs2000-s0"]


def test_every_help_example_keeps_its_line_breaks():
    """An example continued with a backslash must show it: a single backslash before the newline in the
    epilog's source joins the two lines into one with a run of spaces (five sub-commands did)."""
    import argparse

    from lossbench.__main__ import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        for line in (sub.epilog or "").splitlines():
            command = line.split("#")[0].strip()  # a comment may be aligned with spaces
            if command.startswith("python -m lossbench"):
                assert "   " not in command, f"{name} --help joins two example lines: {line.strip()}"
