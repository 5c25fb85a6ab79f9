import numpy as np
import pytest
from PIL import Image

from thesislab.data.stats import channel_stats


def random_images(tmp_path, n=40, seed=0):
    rng = np.random.default_rng(seed)
    paths, arrays = [], []
    for i in range(n):
        h, w = rng.integers(5, 20, 2)
        # Per-image brightness differs, so the global std differs from the mean of per-image stds.
        px = np.clip(rng.normal(rng.uniform(30, 220), 25, (h, w, 3)), 0, 255).astype(np.uint8)
        p = tmp_path / f"{i}.png"
        Image.fromarray(px).save(p)
        paths.append(p)
        arrays.append(px)
    return paths, arrays


def numpy_oracle(arrays):
    allpx = np.concatenate([a.reshape(-1, 3).astype(np.float64) / 255 for a in arrays])
    return allpx.mean(axis=0), allpx.std(axis=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_global_mean_and_std_match_numpy(tmp_path, workers):
    paths, arrays = random_images(tmp_path)
    stats = channel_stats(paths, workers=workers, progress=False)
    mean, std = numpy_oracle(arrays)
    assert np.allclose(stats["mean"], mean, atol=1e-6)
    assert np.allclose(stats["std"], std, atol=1e-6)
    assert stats["count"] == 40
    assert stats["pixels"] == sum(a.shape[0] * a.shape[1] for a in arrays)


def test_not_the_mean_of_per_image_stds(tmp_path):
    paths, arrays = random_images(tmp_path)
    per_image = np.mean([a.reshape(-1, 3).astype(np.float64).std(axis=0) / 255 for a in arrays], axis=0)
    stats = channel_stats(paths, workers=1, progress=False)
    assert np.all(np.array(stats["std"]) > per_image + 0.05)


def test_stats_are_of_the_resized_pixels(tmp_path):
    paths, _ = random_images(tmp_path, n=6)
    resized = [np.asarray(Image.open(p).convert("RGB").resize((8, 8), Image.Resampling.BILINEAR, reducing_gap=3.0))
               for p in paths]
    stats = channel_stats(paths, size=8, workers=1, progress=False)
    mean, std = numpy_oracle(resized)
    assert np.allclose(stats["mean"], mean, atol=1e-6) and np.allclose(stats["std"], std, atol=1e-6)
    assert stats["pixels"] == 6 * 64


def test_order_and_chunking_do_not_matter(tmp_path, monkeypatch):
    from thesislab.data import stats as stats_mod

    paths, _ = random_images(tmp_path, n=30)
    a = channel_stats(paths, workers=1, progress=False)
    monkeypatch.setattr(stats_mod, "chunk_len", lambda size: 7)
    b = channel_stats(list(reversed(paths)), workers=2, progress=False)
    assert a == b


def test_a_chunk_holds_a_bounded_number_of_pixels():
    from thesislab.data.stats import CHUNK_PIXELS, chunk_len

    assert chunk_len(32) == 512
    for size in (8, 64, 224, 1024, 5000):
        assert 1 <= chunk_len(size) and chunk_len(size) * size * size <= max(CHUNK_PIXELS, size * size)
