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


def config_digest(cfg, computation: dict, data_files) -> str:
    """A short hash of what every run of one comparison shares: the params (not the schedule or seed), how the
    arithmetic is done (see runtime.computation) and the input files' bytes. metrics.json records it, and
    the compare stage refuses runs whose digests differ."""
    params = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_DIGEST}
    h = hashlib.sha256(json.dumps({"params": params, "computation": computation}, sort_keys=True).encode())
    for f in data_files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def fingerprint(digest, schedule, seed) -> str:
    """What a checkpoint must match to be resumed: the configuration, the run, and every project source file
    the run loaded (a checkpoint made by other code must not be resumed by this one)."""
    h = hashlib.sha256(f"{digest}:{schedule}:{seed}".encode())
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


def resume_state(path, expected_fingerprint, log=print):
    """The checkpoint at `path` if it was made with the same params and data, else None (start over)."""
    path = Path(path)
    if not path.is_file():
        return None
    state = load(path)
    if state.get("fingerprint") != expected_fingerprint:
        log(f"{path}: made with different params, data or code; not resuming, training from the start")
        return None
    for key in ("epoch", "model", "optimizer", "schedule", "log"):
        if key not in state:
            raise UserError(f"{path}: checkpoint lacks '{key}'; delete it to start over")
    return state


def save_model(path, model, *, name, classes, image_size, dropout, normalization):
    save(path, {
        "format": MODEL_FORMAT,
        "model": name,
        "classes": list(classes),
        "image_size": image_size,
        "dropout": dropout,
        "normalization": normalization,  # {"mean": [...], "std": [...]} or None
        "state_dict": model.state_dict(),
    })


def load_model(path, device="cpu"):
    """Rebuild a trained model from models/<schedule>.pt: returns (model in eval mode, its metadata)."""
    meta = load(path)
    if meta.get("format") != MODEL_FORMAT or not isinstance(meta.get("model"), str):
        raise UserError(f"{path}: not a model file made by this pipeline")
    model = models.build(meta["model"], len(meta["classes"]), meta["image_size"], meta["dropout"])
    try:
        model.load_state_dict(meta["state_dict"])
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit the {meta['model']} model ({str(err).splitlines()[0]})") from None
    return model.to(device).eval(), {k: v for k, v in meta.items() if k != "state_dict"}
