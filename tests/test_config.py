import dataclasses
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, committed, default_params

from thesislab import config
from thesislab.errors import UserError

# Every key users can type, with a value of the wrong type and a value out of range (or an unknown name).
BAD = {
    "dataset": (3, "imagenet"),
    "source": (5, ""),
    "image_size": ("big", 4),
    "speedsigns.train_per_class": (1.5, 0),
    "speedsigns.test_per_class": ("ten", 0),
    "speedsigns.size": ([32], 8),
    "speedsigns.seed": (0.5, 99999999999999999999),
    "model": (True, ""),  # unknown names: the registry refuses them (tests/test_models.py)
    "schedules": ("static", ["static", "static"]),
    "weights": (5, ""),
    "freeze": (True, "head"),
    "lr": ("fast", 0),
    "momentum": ([0.9], 1.0),
    "weight_decay": ("none", -0.1),
    "batch_size": (3.0, 0),
    "epochs": ("many", 0),
    "dropout": ("half", 1.0),
    "normalize": ("yes", None),
    "augment": (1, None),
    "loss_stop": ("low", -1),
    "monitor": (1, "train"),
    "val_fraction": ("tenth", 0.95),
    "seeds": ([], [0, 0]),  # also: [0, 1.5], [-1], 2**32 (test_seed_lists)
    "checkpoint_every": (2.5, -1),
    "dynamic.window": (8.5, 1),
    "dynamic.slope": ("flat", None),
    "dynamic.factor": ("tenth", 1.0),
    "dynamic.max_reductions": ("three", -1),
    "step.step_size": ("ten", 0),
    "step.gamma": ("x", 0),
    "exp.gamma": ("x", 1.5),
    "plateau.factor": ("x", 1.0),
    "plateau.patience": (1.5, -1),
    "onecycle.pct_start": ("x", 1.0),
    "augmentation.crop_padding": ("two", -1),
    "augmentation.flip": ("no", None),
    "compare.baseline": (1, "cosine"),  # not among schedules
    "compare.min_effect": ("half", -0.5),
    "compare.target_acc": ("ninety", 0),
    "compare.sequential.max_seeds": ("fifty", 4),  # a first look needs 5 seeds
    "compare.sequential.every": (1.5, 0),
    "compare.sequential.alpha": ("5%", 0.5),
    "compare.sequential.spending": (1, "haybittle"),
    "compare.sequential.futility": ("yes", None),
    "engine.device": (0, "tpu"),
    "engine.compile": (1, "fastest"),
    "engine.bf16": ("on", None),
    "engine.nproc": (2.0, 0),
    "engine.threads": (0, 1.5),
    "engine.portable": ("yes", 1),
    "engine.resident": (1, "sometimes"),  # 1 is not true: types are compared
    "engine.eval_batch_size": ("big", 0),
}


def leaf_keys(cls, prefix=""):
    for f in dataclasses.fields(cls):
        if "group" in f.metadata:
            yield from leaf_keys(f.metadata["group"], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def defaults_dict():
    return default_params()


def with_value(key, value):
    raw = defaults_dict()
    d = raw
    *groups, last = key.split(".")
    for g in groups:
        d = d[g]
    d[last] = value
    return raw


def test_params_yaml_is_the_defaults():
    """params.yaml as committed: the user's experiments change the working copy, not what the project ships."""
    assert config.from_dict(yaml.load(committed("params.yaml"), Loader=config.Yaml12Loader)) == config.Config()


def test_every_key_has_bad_value_cases():
    assert set(leaf_keys(config.Config)) == set(BAD)


def check_one_line(err, key):
    text = str(err.value)
    assert "\n" not in text
    assert key in text
    assert "must be" in text or "unknown" in text


@pytest.mark.parametrize("key", sorted(BAD))
def test_wrong_type_names_the_key(key):
    with pytest.raises(UserError) as err:
        config.from_dict(with_value(key, BAD[key][0]))
    check_one_line(err, key)


@pytest.mark.parametrize("key", sorted(k for k, (_, bad) in BAD.items() if bad is not None))
def test_out_of_range_or_unknown_name_names_the_key(key):
    with pytest.raises(UserError) as err:
        config.from_dict(with_value(key, BAD[key][1]))
    check_one_line(err, key)


@pytest.mark.parametrize("key", ["lrr", "dynamic.windw", "step.size", "static.window", "engine.gpu"])
def test_unknown_key_is_named(key):
    with pytest.raises(UserError) as err:
        config.from_dict(with_value(key, 1))
    assert f"unknown key '{key}'" in str(err.value)


def test_allowed_values_are_listed():
    with pytest.raises(UserError, match=r"monitor: must be one of: val, test \(got 'train'\)"):
        config.from_dict(with_value("monitor", "train"))
    with pytest.raises(UserError, match=r"lr: must be a number in \(0, 1000\] \(got 0\)"):
        config.from_dict(with_value("lr", 0))


@pytest.mark.parametrize("seeds", [[], [0, 0], [0, 1.5], [-1], [2**32], [True], "0", 0])
def test_seed_lists(seeds):
    with pytest.raises(UserError, match=r"^params.yaml: seeds: must be a non-empty list of distinct integers"):
        config.from_dict(with_value("seeds", seeds))
    assert config.from_dict(with_value("seeds", [0, 2**32 - 1, 7])).seeds == (0, 2**32 - 1, 7)


def test_baseline_must_be_a_compared_schedule():
    raw = with_value("schedules", ["dynamic", "cosine"])
    with pytest.raises(UserError, match=r"compare.baseline: must be one of schedules \(dynamic, cosine\) "
                                        r"\(got 'static'\)"):
        config.from_dict(raw)
    raw["compare"]["baseline"] = "cosine"
    assert config.from_dict(raw).compare.baseline == "cosine"


def load_text(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(defaults_dict()) + text)
    return config.load(p)


def test_params_are_read_as_yaml_1_2(tmp_path):
    """What `dvc exp run -S` writes: 1e-3 is a number, `yes` and `on` are words (refused where a boolean is
    expected), 1:30 is text (refused where an integer is expected), not 90."""
    assert load_text(tmp_path, "lr: 1e-3\n").lr == pytest.approx(0.001)
    assert load_text(tmp_path, "epochs: 010\n").epochs == 10
    with pytest.raises(UserError, match=r"normalize: must be true or false \(got 'yes'\)"):
        load_text(tmp_path, "normalize: yes\n")
    with pytest.raises(UserError, match=r"augment: must be true or false \(got 'on'\)"):
        load_text(tmp_path, "augment: on\n")
    with pytest.raises(UserError, match=r"epochs: must be an integer in \[1, 100000\] \(got '1:30'\)"):
        load_text(tmp_path, "epochs: 1:30\n")


def test_booleans_are_not_numbers_and_numbers_are_not_booleans():
    with pytest.raises(UserError):
        config.from_dict(with_value("epochs", True))
    with pytest.raises(UserError):
        config.from_dict(with_value("normalize", 1))
    with pytest.raises(UserError):
        config.from_dict(with_value("lr", "0.01"))  # a quoted number is text


def test_cross_key_rules():
    raw = with_value("val_fraction", 0)
    with pytest.raises(UserError, match="val_fraction"):
        config.from_dict(raw)
    raw["monitor"] = "test"
    assert config.from_dict(raw).val_fraction == 0
    with pytest.raises(UserError, match="source"):
        config.from_dict(with_value("dataset", "folder"))


def test_invalid_yaml_is_one_line(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("lr: [0.01\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config.load(p)


def test_a_stage_with_bad_params_prints_one_line_exits_2_and_writes_nothing(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value("lr", -1)))
    out = tmp_path / "raw"
    cmd = [sys.executable, "-m", "stages.download", "--out", str(out), "--samples", str(tmp_path / "s.png"),
           "--sources", str(tmp_path)]
    r = subprocess.run(cmd,
                       cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: params.yaml: lr: must be a number in (0, 1000] (got -1)"]
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


def test_a_non_integer_seed_from_dvcs_matrix_is_the_seeds_line(tmp_path):
    """`-S 'seeds=[0,1.5]'` makes DVC's matrix call the train stage with --seed 1.5: the stage must refuse the
    params (naming `seeds`) before parsing the seed, not fail in argparse with a usage message."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value("seeds", [0, 1.5])))
    cmd = [sys.executable, "-m", "stages.train", "--schedule", "static", "--seed", "1.5"] + [
        f"--{a}={tmp_path / a}" for a in ("root", "pathlist", "stats", "cache", "model", "weights", "checkpoints",
                                          "out", "live")]
    r = subprocess.run(cmd, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True)
    assert (r.returncode, r.stderr.strip().splitlines()) == (2, [
        "error: params.yaml: seeds: must be a non-empty list of distinct integers in [0, 4294967295], e.g. [0, 1, 2] "
        "(got [0, 1.5])"])
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


def test_a_workspace_experiment_refused_by_the_check_stage_says_how_to_restore_params(tmp_path):
    """`dvc exp run -S lr=0` in the workspace: DVC has written lr 0 into params.yaml before the check stage refuses
    it, and leaves it there; the one line says how to go back. A queued or --temp copy (DVC_ROOT elsewhere) and a
    plain `dvc repro` (no experiment) get the refusal alone."""
    import os

    params = {**default_params(), "lr": 0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "weights").mkdir()
    cmd = [sys.executable, "-m", "stages.check", "--out", "stamp.txt", "--comparison", "comparison.json",
           "--weights", "weights", "--weights-in-use", "in-use.json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    refusal = "error: params.yaml: lr: must be a number in (0, 1000] (got 0)"
    cases = [({}, refusal),
             ({"DVC_EXP_NAME": "lr-zero", "DVC_ROOT": str(tmp_path)},
              refusal + "; dvc exp run left its -S values in params.yaml: git checkout params.yaml dvc.lock restores "
                        "them"),
             ({"DVC_EXP_NAME": "lr-zero", "DVC_ROOT": str(ROOT)}, refusal)]
    for extra, line in cases:
        done = subprocess.run(cmd, cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.strip().splitlines() == [line], (extra, done.stderr)
        assert not (tmp_path / "stamp.txt").exists()
