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
