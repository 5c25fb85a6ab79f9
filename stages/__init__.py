"""One thin script per pipeline stage: parse the paths dvc.yaml passes, load params, call the library."""

from thesislab import arithmetic

# Before a stage loads numpy: its kernels, like torch's, are chosen by CPU. (Not strict: the sweep imports a
# stage's module for its argument parser, with numpy loaded long before, and computes nothing with it.)
arithmetic.pin_numpy(strict=False)
