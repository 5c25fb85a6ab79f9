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


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
def test_outputs_written_together_change_together_or_not_at_all(tmp_path, interrupt):
    a, folder = tmp_path / "comparison.json", tmp_path / "plots"
    io.write_text(a, "old")
    with io.atomic_dir(folder) as tmp:
        (tmp / "fig.png").write_text("old")
    with pytest.raises(interrupt):
        with io.together():
            io.write_text(a, "new")
            assert a.read_text() == "old"  # nothing is in place before the block ends
            with io.atomic_dir(folder) as tmp:
                io.write_text(tmp / "fig.png", "new")
            raise interrupt("Ctrl-C before the table was written")
    assert a.read_text() == "old" and (folder / "fig.png").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["comparison.json", "plots"]  # no temporary left
    with io.together():
        io.write_text(a, "new")
        with io.atomic_dir(folder) as tmp:
            io.write_text(tmp / "fig.png", "new")
    assert a.read_text() == "new" and (folder / "fig.png").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["comparison.json", "plots"] and os.listdir(folder) == ["fig.png"]


def test_a_block_inside_another_hands_its_outputs_to_the_outer_one(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    with io.together():
        io.write_text(a, "a")
        with io.together():
            io.write_text(b, "b")
        assert not b.exists()  # the inner block's end is not the end
    assert a.read_text() == "a" and b.read_text() == "b"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]


def test_ctrl_c_while_outputs_are_put_in_place_waits_for_the_last(tmp_path, monkeypatch):
    """A signal that lands between two renames is held until both are done, then delivered."""
    import signal

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    io.write_text(a, "old")
    io.write_text(b, "old")
    real, calls = os.replace, []

    def replace_then_ctrl_c(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C right after the first output is in place

    monkeypatch.setattr(os, "replace", replace_then_ctrl_c)
    # Ctrl-C as a terminal's process gets it: a job started in the background of a script inherits SIGINT ignored,
    # and together() rightly keeps a signal ignored that was ignored before.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with io.together():
                io.write_text(a, "new")
                io.write_text(b, "new")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert a.read_text() == "new" and b.read_text() == "new" and len(calls) == 2


def test_a_signal_ignored_before_the_block_stays_ignored(tmp_path):
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with io.together():
            io.write_text(tmp_path / "a.txt", "new")
            signal.raise_signal(signal.SIGINT)  # held, then re-delivered to the ignoring handler: nothing happens
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "a.txt").read_text() == "new"
