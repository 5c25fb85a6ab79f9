"""Starting from trained weights (transfer learning), offline.

`weights` names a file in the weights folder (data/weights/): a state_dict saved with torch.save (`.pth`), or
a model file this pipeline wrote. It is read with torch.load(weights_only=True) and loaded into the model;
when the class count differs, the classifier head (the last Linear layer) keeps its fresh initialisation, as
the PyTorch tutorials do with VGG16. `weights: IMAGENET1K_V1` (or DEFAULT, or any of the model's torchvision
weight names) asks torchvision for its published weights: a download, which fails in one line where the
network is out of reach. `freeze: backbone` then trains the head alone.
"""

import os
from pathlib import Path

import torch

from thesislab import files
from thesislab.errors import UserError
from thesislab.train import models

WEIGHT_SUFFIXES = (".pth", ".pt")


def is_file_name(weights) -> bool:
    return str(weights).endswith(WEIGHT_SUFFIXES) or "/" in str(weights)


def weights_file(weights, weights_dir) -> Path:
    """The weights file, checked to lie inside weights_dir (a dependency of the train stage, so DVC retrains
    when the file changes) and to exist."""
    path = Path(weights)
    real, allowed = os.path.realpath(path), os.path.realpath(weights_dir)
    if os.path.commonpath([real, allowed]) != allowed:
        raise UserError(f"weights: {weights} is outside {weights_dir}/, where DVC watches weights for changes; "
                        "move or copy it there")
    if not os.path.isfile(real):
        raise UserError(f"weights: {weights}: no such file")
    return Path(real)


def in_use(weights, weights_dir) -> dict:
    """What runs start from, for the train stages' dependency (stages/check.py writes it): {"weights": null}, a
    torchvision weights name, or a file of weights_dir with its md5. It changes only when the weights the runs
    read change, not when another file in weights_dir does."""
    if not weights or not is_file_name(weights):
        return {"weights": weights or None}
    return {"weights": str(weights), "md5": files.md5_of(weights_file(weights, weights_dir))}


def read_state_dict(path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a zip, a refused global, a truncated file: none is a state_dict
        first = (str(err).strip().splitlines() or [err.__class__.__name__])[0][:120]
        raise UserError(f"weights: {path}: not a state_dict torch can load safely ({first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a model file of this pipeline
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights: {path}: not a state_dict (a mapping of parameter names to tensors)")
    return state


def named_weights(model_name, weights) -> dict:
    """torchvision's published weights for this model: downloaded once into torch's cache, or one line."""
    tv = models.torchvision_name(model_name)
    if tv is None:
        raise UserError(f"weights: {weights!r} names published weights, which only torchvision models have; "
                        f"{model_name} is this project's net (give a .pth file in the weights folder)")
    import torchvision

    try:
        entry = torchvision.models.get_model_weights(tv)[weights]
    except KeyError:
        known = ", ".join(torchvision.models.get_model_weights(tv).__members__)
        raise UserError(f"weights: {tv} has no weights named {weights!r} (it has: {known})") from None
    try:
        return entry.get_state_dict(progress=False)
    except Exception as err:  # urllib/ssl/http errors: all mean "not reachable from here"
        raise UserError(f"weights: {weights} for {tv} must be downloaded from {entry.url}, which this machine "
                        f"cannot reach ({err.__class__.__name__}); download it elsewhere and put the .pth in the "
                        "weights folder") from None


def load_into(model, state, source) -> list:
    """Copy `state` into `model`. Returns the head's keys left at their fresh initialisation because their shape
    differs (another class count); any other difference is refused, naming the first mismatching key."""
    own = model.state_dict()
    head = models.head_name(model)
    for key in own:
        if key not in state:
            raise UserError(f"weights: {source} does not fit this model: it lacks '{key}'")
    for key in state:
        if key not in own:
            raise UserError(f"weights: {source} does not fit this model: it has '{key}', which the model lacks")
    replaced = [k for k in own if state[k].shape != own[k].shape]
    for key in replaced:
        if not (head and key.startswith(head + ".")):
            raise UserError(f"weights: {source} does not fit this model: '{key}' is {tuple(state[key].shape)} there, "
                            f"{tuple(own[key].shape)} here")
    model.load_state_dict({k: v for k, v in state.items() if k not in replaced}, strict=False)
    return replaced


def freeze_backbone(model):
    """Train the classifier head alone: every other parameter stops taking gradients. (BatchNorm's running
    statistics still adapt to the new images, as in the PyTorch fine-tuning tutorial.)"""
    if not models.head_name(model):
        raise UserError("freeze: backbone: this model has no Linear classifier head to train alone (its classifier "
                        "is convolutional, as squeezenet's is); set freeze: null to fine-tune every layer")
    head = models.head_name(model) + "."
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(head))
