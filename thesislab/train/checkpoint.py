"""Checkpoints and model files: state_dicts plus what rebuilds them, loaded with weights_only=True.

A checkpoint carries the fingerprint of everything its numbers depend on: the params, the data, the
computation (device type, bf16, torch.compile, processes, torch's version, CPU threads) and the project code
the run loaded. Resuming from
one made with anything else is refused (training starts over). A checkpoint lives only while its run is
unfinished: a finished run deletes it, so a forced rerun trains from scratch. A truncated or tampered file is
reported as such.
"""

import hashlib
import json
import math
import sys
from pathlib import Path

import torch

from thesislab import io
from thesislab.errors import UserError
from thesislab.train import models

MODEL_FORMAT = 1
PROJECT = Path(__file__).resolve().parents[2]
CODE_FOLDERS = (PROJECT / "thesislab", PROJECT / "stages")  # the project's own code (not .venv's)
# Params outside the digest: how often to checkpoint, where and how fast (resolved into `computation`), and the lists
# that say which runs and comparisons exist.
NOT_IN_DIGEST = ("checkpoint_every", "schedules", "seeds", "compare", "engine")
# Each schedule's knobs: in its own runs' fingerprint, not in the digest every run of a comparison shares (a static
# run made before dynamic.window changed is still the baseline of the new dynamic runs).
SCHEDULE_KNOBS = ("static", "dynamic", "step", "exp", "cosine", "onecycle", "plateau")


def config_digest(cfg, computation: dict, data_files) -> str:
    """A short hash of what every run of one comparison shares: the params (not the schedule or seed), how the
    arithmetic is done (see runtime.computation) and the input files' bytes. metrics.json records it, and
    the compare stage refuses runs whose digests differ."""
    params = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_DIGEST + SCHEDULE_KNOBS}
    h = hashlib.sha256(json.dumps({"params": params, "computation": computation}, sort_keys=True).encode())
    for f in data_files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def schedule_knobs(cfg, schedule) -> dict:
    """The knobs of one schedule, as params.yaml sets them (metrics.json records them)."""
    return cfg.to_dict()[schedule]


def fingerprint(digest, schedule, seed, knobs=None) -> str:
    """What a checkpoint must match to be resumed: the configuration, the run and its schedule's knobs, and
    every project source file the run loaded (a checkpoint made by other code must not be resumed by this one)."""
    h = hashlib.sha256(f"{digest}:{schedule}:{seed}:{json.dumps(knobs, sort_keys=True)}".encode())
    for f in loaded_project_files():
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def loaded_project_files() -> list:
    """The project's own source files this process has imported (the stage script included): the same
    set tests/test_dvc_deps.py checks against each stage's dvc.yaml deps."""
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.endswith(".py") and any(Path(path).resolve().is_relative_to(d) for d in CODE_FOLDERS):
            found.add(Path(path).resolve())
    return sorted(found)


def save(path, state: dict):
    io.write_torch(path, state)


def load(path) -> dict:
    """Read a checkpoint or model file safely (tensors and plain containers only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as err:  # truncated zip, tampered pickle, refused global: all mean "do not trust it"
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise UserError(f"{path}: unreadable or tampered checkpoint ({first[:160]}); delete it to start over") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a checkpoint made by this pipeline")
    return state


def origin(digest, computation, knobs) -> dict:
    """What a checkpoint's fingerprint is made of, in the open: saved beside it, so that a checkpoint refused says
    what differs (the arithmetic, the schedule's params, the params or data, or the code)."""
    # Through JSON: plain types only (torch.__version__ is a str subclass that weights_only loading refuses).
    return json.loads(json.dumps({"config": digest, "computation": computation, "schedule_params": knobs}))


def what_differs(saved, now) -> str:
    """The first of: the arithmetic (named key by key), the schedule's params, the params or data, the code."""
    if not isinstance(saved, dict) or not isinstance(now, dict):
        return "different params, data or code"
    then_c, now_c = saved.get("computation") or {}, now.get("computation") or {}
    changed = [k for k in sorted(set(then_c) | set(now_c)) if then_c.get(k) != now_c.get(k)]
    if changed:
        return "another arithmetic (" + ", ".join(f"{k}: {_value(then_c.get(k))} then, {_value(now_c.get(k))} now"
                                                  for k in changed[:3]) + ")"
    if saved.get("schedule_params") != now.get("schedule_params"):
        return "other schedule params"
    if saved.get("config") != now.get("config"):
        return "other params or data"
    return "other project code"


def _value(v):
    return json.dumps(v) if isinstance(v, (bool, type(None))) else str(v)


def resume_state(path, expected_fingerprint, log=print, expected_origin=None):
    """The checkpoint at `path` if it was made with the same params and data, else None (start over)."""
    path = Path(path)
    if not path.is_file():
        return None
    state = load(path)
    if state.get("fingerprint") != expected_fingerprint:
        log(f"{path}: made with {what_differs(state.get('origin'), expected_origin)}; not resuming, training from "
            "the start")
        return None
    for key in ("epoch", "model", "optimizer", "schedule", "log"):
        if key not in state:
            raise UserError(f"{path}: checkpoint lacks '{key}'; delete it to start over")
    return state


def owned(state):
    """A copy of a state_dict with each tensor in a storage of its own: a run of a pack holds views into the pack's
    stacked weights, and torch.save of a view writes its whole storage (every run's weights) with it."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        copy = type(state)((k, owned(v)) for k, v in state.items())
        if hasattr(state, "_metadata"):  # a module's state_dict: its version record is saved with it
            copy._metadata = state._metadata
        return copy
    if isinstance(state, (list, tuple)):
        return type(state)(owned(v) for v in state)
    return state


def save_model(path, model, *, name, classes, image_size, dropout, normalization):
    save(path, {
        "format": MODEL_FORMAT,
        "model": name,
        "classes": list(classes),
        "image_size": image_size,
        "dropout": dropout,
        "normalization": normalization,  # {"mean": [...], "std": [...]} or None
        "state_dict": owned(model.state_dict()),
    })


def check_model_meta(path, meta):
    """Refuse what no model file this pipeline writes can hold: a tampered file would otherwise predict NaN
    (a std of 0) or fail deep inside the net."""
    classes, size, dropout, norm = meta.get("classes"), meta.get("image_size"), meta.get("dropout"), \
        meta.get("normalization")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise UserError(f"{path}: its class names are not a list of at least 2 names; not a model file to trust")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 1024:
        raise UserError(f"{path}: its image_size {size!r} is not an integer in [8, 1024]; not a model file to trust")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise UserError(f"{path}: its dropout {dropout!r} is not in [0, 1); not a model file to trust")
    if norm is not None:
        try:
            mean, std = [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]
        except (TypeError, KeyError, ValueError):
            raise UserError(f"{path}: its normalization is not a mean and a std; not a model file to trust") from None
        if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
            raise UserError(f"{path}: its normalization needs 3 finite means and 3 positive stds (std {std}); "
                            "not a model file to trust")


def load_model(path, device="cpu"):
    """Rebuild a trained model from models/<schedule>.pt: returns (model in eval mode, its metadata)."""
    if Path(path).is_dir():
        raise UserError(f"{path}: is a folder; give a model file, e.g. {Path(path) / 'dynamic-0.pt'}")
    meta = load(path)
    if meta.get("format") != MODEL_FORMAT or not isinstance(meta.get("model"), str):
        raise UserError(f"{path}: not a model file made by this pipeline")
    check_model_meta(path, meta)
    try:
        model = models.build(meta["model"], len(meta["classes"]), meta["image_size"], meta["dropout"])
    except UserError as err:  # the registry speaks of params.yaml; here the file is to blame
        reason = str(err).removeprefix("params.yaml: ").removeprefix("model: ").split(" (see docs/")[0]
        raise UserError(f"{path}: cannot rebuild its net: {reason}") from None
    try:
        model.load_state_dict(meta["state_dict"])
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit the {meta['model']} model ({str(err).splitlines()[0]})") from None
    return model.to(device).eval(), {k: v for k, v in meta.items() if k != "state_dict"}
