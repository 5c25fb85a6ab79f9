"""The check stage: bad params stop `dvc repro` before any shell sees a matrix name and before any data stage.

DVC pastes schedule names into the train stages' shell commands; the check stage, which download (and so every
stage) follows, refuses them first.
"""

import pytest
import yaml
from conftest import make_project

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("schedules, says", [
    (["static", "x;touch pwned;"], "params.yaml: schedules: must be a non-empty list of distinct schedule names"),
    (["static", "dynamic "], "params.yaml: schedules: must be a non-empty list of distinct schedule names"),
    (["static", "$(touch pwned)"], "params.yaml: schedules:"),
])
def test_a_bad_schedule_name_never_reaches_a_shell(tmp_path, schedules, says):
    project = make_project(tmp_path / "proj")
    raw = yaml.safe_load(project.read("params.yaml"))
    raw["schedules"] = schedules
    (project.path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    result = project.dvc("repro", check=False)
    assert result.returncode != 0
    assert not (project.path / "pwned").exists()
    assert "Running stage 'check'" in result.stdout and "Running stage 'download'" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: " + says), result.stderr
    assert not (project.path / "data" / "raw" / "speedsigns").exists()


def test_a_misspelt_model_stops_before_the_data_stages(tmp_path):
    project = make_project(tmp_path / "proj", model="resnet5O")
    result = project.dvc("repro", check=False)
    assert result.returncode != 0 and "Running stage 'download'" not in result.stdout
    assert "error: params.yaml: model: 'resnet5O' is neither" in result.stderr


@pytest.mark.slow  # CI runs it after make test (make test-slow)
def test_a_good_change_of_params_reruns_the_check_alone(tmp_path):
    project = make_project(tmp_path / "proj", epochs=1)
    project.dvc("repro")
    project.set_params(compare={"min_effect": 1})
    ran = [line.split("'")[1] for line in project.dvc("repro").stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["check", "compare"]
