import hashlib

import numpy as np
from PIL import Image

from thesislab.data import layout, speedsigns
from thesislab.data.samples import sample_grid


def pixels(img):
    return np.asarray(img)


def test_eleven_classes_from_20_to_110_in_label_order():
    assert len(speedsigns.CLASSES) == 11
    assert speedsigns.SPEEDS[0] == 20 and speedsigns.SPEEDS[-1] == 110
    assert list(speedsigns.CLASSES) == sorted(speedsigns.CLASSES)


def test_same_arguments_same_pixels_and_others_differ():
    a = pixels(speedsigns.render(0, "train", 3, 5, 32))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, pixels(speedsigns.render(0, "train", 3, 5, 32)))
    for other in [(1, "train", 3, 5), (0, "test", 3, 5), (0, "train", 4, 5), (0, "train", 3, 6)]:
        assert not np.array_equal(a, pixels(speedsigns.render(*other, 32)))


def tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_independent_of_workers_and_counts(tmp_path):
    speedsigns.generate(tmp_path / "a", {"train": 3, "test": 2}, 24, seed=7, workers=1, progress=False)
    speedsigns.generate(tmp_path / "b", {"train": 3, "test": 2}, 24, seed=7, workers=2, progress=False)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    # Asking for more images keeps the first ones.
    speedsigns.generate(tmp_path / "c", {"train": 5, "test": 2}, 24, seed=7, workers=1, progress=False)
    same = tmp_path / "a" / "train" / "110kmh" / "00002.png"
    assert same.read_bytes() == (tmp_path / "c" / "train" / "110kmh" / "00002.png").read_bytes()
    found = layout.scan(tmp_path / "c")
    assert len(found.files["train"]) == 55 and len(found.files["test"]) == 22


def test_conditions_vary_brightness_widely():
    means = [pixels(speedsigns.render(0, "train", i % 11, i, 32)).mean() for i in range(200)]
    # Night scenes are dark, day scenes bright: the spread that makes normalisation matter.
    assert min(means) < 40 and max(means) > 140


def test_sample_grid_has_a_row_per_class(tmp_path):
    speedsigns.generate(tmp_path / "d", {"train": 2, "test": 1}, 32, seed=0, workers=1, progress=False)
    found = layout.scan(tmp_path / "d")
    sample_grid(tmp_path / "d", found, tmp_path / "grid.png", per_row=2)
    with Image.open(tmp_path / "grid.png") as img:
        assert img.size[1] == 11 * 64
