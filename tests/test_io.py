import os
import stat

import pytest

from thesislab import io


def test_atomic_write_replaces_whole_and_keeps_usual_permissions(tmp_path):
    target = tmp_path / "out" / "m.json"
    io.write_json(target, {"a": 1})
    io.write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 2\n}\n'
    assert stat.S_IMODE(target.stat().st_mode) == io.FILE_MODE
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "m.txt"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["m.txt"]


def test_atomic_dir_swaps_whole_and_cleans_stale_temps(tmp_path):
    target = tmp_path / "ds"
    (tmp_path / ".ds.abc.tmp").mkdir()  # left by a killed run
    with io.atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with io.atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("killed")
    assert sorted(os.listdir(tmp_path)) == ["ds"]
    assert os.listdir(target) == ["a"]
    assert stat.S_IMODE(target.stat().st_mode) == io.DIR_MODE
