"""Checkpoints and model files: state_dicts plus what rebuilds them, loaded with weights_only=True.

A checkpoint carries the fingerprint of the params, data and code it was made with; resuming from one
made with anything else is refused (training starts over). A truncated or tampered file is reported as such.
"""

import hashlib
import json
from pathlib import Path

import torch

from thesislab import io
from thesislab.errors import UserError
from thesislab.train import models

MODEL_FORMAT = 1


PACKAGE = Path(__file__).resolve().parents[1]


def fingerprint(cfg, schedule, data_files) -> str:
    """What a run's results depend on: every param but the engine's, the schedule, the data's bytes, and
    the library's code (a checkpoint made by other code must not be resumed by this one)."""
    params = cfg.to_dict()
    params.pop("engine")
    params.pop("checkpoint_every")
    h = hashlib.sha256(json.dumps({"params": params, "schedule": schedule}, sort_keys=True).encode())
    for f in list(data_files) + sorted(PACKAGE.rglob("*.py")):
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def save(path, state: dict):
    with io.atomic_path(path) as tmp:
        torch.save(state, tmp)


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
    if meta.get("format") != MODEL_FORMAT or meta.get("model") not in models.REGISTRY:
        raise UserError(f"{path}: not a model file made by this pipeline")
    model = models.build(meta["model"], len(meta["classes"]), meta["image_size"], meta["dropout"])
    try:
        model.load_state_dict(meta["state_dict"])
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit the {meta['model']} model ({str(err).splitlines()[0]})") from None
    return model.to(device).eval(), {k: v for k, v in meta.items() if k != "state_dict"}
