"""Classify image files with a trained model, with exactly the preprocessing it was trained with.

    python -m thesislab.predict models/dynamic-0.pt photo.jpg sign.png --top 3

Each image is decoded as the pipeline decodes it (any mode to 8-bit RGB, transparency onto black, 16-bit to its
top 8 bits), squashed to the model's image_size, scaled to [0, 1] and normalised with the mean and std the model
was trained with (stored in the model file), by the same code that makes training batches.
"""

import argparse
import os
import sys

from thesislab import arithmetic

# The command and the library alike compute with the pipeline's portable arithmetic, set before torch loads; a
# caller that loaded torch first with other kernels is refused here (pin says why), never silently unpinned.
arithmetic.pin(True)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from thesislab.data.images import load_rgb  # noqa: E402
from thesislab.errors import UserError, stage_main  # noqa: E402
from thesislab.train.batches import Batches, Split  # noqa: E402
from thesislab.train.checkpoint import load_model  # noqa: E402


@torch.no_grad()
def predict(model_file, image_paths, top=1, device="cpu", batch_size=256) -> list:
    """[{"path", "class", "probability", "top": [(class, probability), ...]}] per image, in order."""
    model, meta = load_model(model_file, device)
    classes, norm = meta["classes"], meta["normalization"] or {}
    images = np.stack([load_rgb(p, meta["image_size"]) for p in image_paths])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    batches = Batches(Split(x, torch.zeros(len(x), dtype=torch.long, device=device)), batch_size, norm.get("mean"),
                      norm.get("std"))
    probabilities = torch.cat([model(b).softmax(1) for b, _, _ in batches.epoch()]).cpu()
    results = []
    for path, p in zip(image_paths, probabilities):
        best = p.topk(min(top, len(classes)))
        ranked = [(classes[i], float(v)) for v, i in zip(best.values, best.indices)]
        results.append({"path": str(path), "class": ranked[0][0], "probability": ranked[0][1], "top": ranked})
    return results


@stage_main
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m thesislab.predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a model file the train stage wrote (models/<schedule>-<seed>.pt)")
    ap.add_argument("images", nargs="+", help="image files")
    ap.add_argument("--top", type=int, default=1, help="classes to list per image, most probable first")
    args = ap.parse_args(argv)
    if args.top < 1:
        raise UserError(f"--top: must be at least 1 (got {args.top})")
    for path in args.images:
        if not os.path.isfile(path):
            raise UserError(f"{path}: {'is a folder, not an image file' if os.path.isdir(path) else 'no such file'}")
    for r in predict(args.model, args.images, top=args.top):
        print(r["path"] + "\t" + "\t".join(f"{name} {p:.4f}" for name, p in r["top"]))


if __name__ == "__main__":
    sys.exit(main())
