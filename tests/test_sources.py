"""Your own folder as the dataset, end to end: DVC notices when it changes, and queued runs can reach it."""

import json
import shutil

import pytest
from conftest import make_image_folder, make_project, ran

# Slow as a whole (its tests share one project, each step a DVC run): make test-slow and CI run it after make test.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    proj = make_project(tmp_path_factory.mktemp("src") / "proj", dataset="folder", source="data/sources/mine",
                        image_size=8, batch_size=4, epochs=1, monitor="test", schedules=["static"])
    make_image_folder(proj.path / "data" / "sources" / "mine", classes=("cat", "dog"), per_split=(6, 2))
    proj.dvc("add", "data/sources/mine")
    proj.git("add", "-A")
    proj.git("commit", "-qm", "my images")
    return proj


def test_a_changed_source_folder_is_seen_by_dvc_status_and_repro(proj):
    proj.dvc("repro")
    assert proj.read("data/pathlist/classes.txt") == "cat\ndog\n"
    proj.git("add", "-A")
    proj.git("commit", "-qm", "run")
    new = proj.path / "data" / "sources" / "mine"
    make_image_folder(proj.path / "extra", classes=("eel",), per_split=(6, 2))
    for split in ("train", "test"):
        shutil.copytree(proj.path / "extra" / split / "eel", new / split / "eel")
    status = proj.dvc("status").stdout
    assert "download:" in status and "modified:           data/sources" in status
    proj.dvc("repro")
    assert proj.read("data/pathlist/classes.txt") == "cat\ndog\neel\n"
    proj.dvc("add", "data/sources/mine")
    proj.git("add", "-A")
    proj.git("commit", "-qm", "a third class")


def test_an_edited_image_reruns_what_reads_it_and_an_identical_import_reruns_nothing(proj):
    """Downstream stages depend on the dataset's manifest: new bytes in one image rerun stats and training;
    importing the same images again (a forced download) leaves the manifest as it was, so nothing else runs."""
    proj.dvc("repro")
    stats = proj.read("metrics/stats.json")
    image = proj.path / "data" / "sources" / "mine" / "train" / "cat" / "0.png"
    image.unlink()  # DVC's cache may hold it read-only: replace, do not write in place
    make_image_folder(proj.path / "other", classes=("cat",), per_split=(1, 1), seed=7)
    shutil.copy(proj.path / "other" / "train" / "cat" / "0.png", image)
    assert "modified:           data/sources" in proj.dvc("status").stdout
    assert ran(proj.dvc("repro")) == ["download", "pathlist", "stats", "train@static-0", "compare"]
    assert proj.read("metrics/stats.json") != stats
    proj.dvc("add", "data/sources/mine")
    assert ran(proj.dvc("repro", "-f", "-s", "download")) == ["download"]
    assert ran(proj.dvc("repro")) == []


def test_a_run_outside_the_workspace_finds_a_relative_dvc_tracked_source(proj):
    """--temp runs in .dvc/tmp/exps, as queued runs do: the relative source resolves there, from DVC's cache."""
    result = proj.dvc("exp", "run", "--temp", "--force", "-n", "elsewhere", "-S", "lr=0.02")  # import again there
    assert "Running stage 'download'" in result.stdout and "3 classes" in result.stdout
    shown = json.loads(proj.dvc("exp", "show", "--json").stdout)
    assert "elsewhere" in json.dumps(shown)
