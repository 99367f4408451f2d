import os
import stat

import pytest

from lossbench._io import write_text_atomic


def test_atomic_write_gives_the_usual_mode_and_leaves_no_temporary(tmp_path):
    """mkstemp creates 0600; a finished output gets 0666 minus the umask, like any file the user writes."""
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "out.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from lossbench._io import atomic_path

    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]
