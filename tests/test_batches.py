import torch
import torch.nn.functional as F

from thesislab.train.batches import Batches, Split, epoch_seed


def split(n=10, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=g), torch.arange(n) % 3)


def test_plain_batches_are_normalised_in_order():
    s = split()
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.2]
    got = list(Batches(s, 4, mean, std).epoch())
    assert [y.tolist() for _, y, _ in got] == [[0, 1, 2, 0], [1, 2, 0, 1], [2, 0]]
    assert [n for _, _, n in got] == [4, 4, 2]
    x = torch.cat([b for b, _, _ in got])
    ref = (s.images.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x.double(), ref, atol=1e-5)


def test_without_stats_images_are_in_0_1():
    s = split()
    x = next(Batches(s, 10).epoch())[0]
    assert torch.allclose(x, s.images.float() / 255)


def test_shuffle_is_a_permutation_fixed_by_the_seed():
    s = split(n=23)
    b = Batches(s, 5)
    order = lambda seed: torch.cat([y for _, y, _ in b.epoch(seed)])  # noqa: E731
    first = torch.cat([x for x, _, _ in b.epoch(3)])
    assert torch.equal(first, torch.cat([x for x, _, _ in b.epoch(3)]))
    assert not torch.equal(first, torch.cat([x for x, _, _ in b.epoch(4)]))
    assert sorted(order(3).tolist()) == sorted(s.labels.tolist())


def reference_crop_flip(img, dy, dx, flip, pad):
    """One image, the plain way: zero-pad, crop at (dy, dx), mirror."""
    padded = F.pad(img, [pad] * 4)
    out = padded[:, dy : dy + img.shape[1], dx : dx + img.shape[2]]
    return out.flip(2) if flip else out


def test_translation_and_flip_match_a_per_image_reference():
    s = split(n=16, h=7, w=9)
    pad = 2
    b = Batches(s, 16, augment=(pad, True))
    seed = 11
    x, _, _ = next(b.epoch(seed))
    # Recreate the epoch's draws exactly as Batches does.
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(16, generator=g)
    shifts = torch.randint(0, 2 * pad + 1, (16, 2), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    assert flips.any() and not flips.all()
    for k, i in enumerate(order.tolist()):
        ref = reference_crop_flip(s.images[i], int(shifts[i, 0]), int(shifts[i, 1]), bool(flips[i]), pad)
        assert torch.allclose(x[k], ref.float() / 255), k


def test_ranks_split_each_global_batch_without_overlap():
    s = split(n=12)
    whole = [y for _, y, _ in Batches(s, 4).epoch(5)]
    parts = [[y for _, y, _ in Batches(s, 4, rank=r, world=2).epoch(5)] for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 3
    for step, y in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][step], parts[1][step]]), y)


def sizes(batches, seed=None):
    return [n for _, _, n in batches.epoch(seed)]


def test_a_last_batch_too_small_to_train_on_joins_the_one_before():
    """BatchNorm cannot train on one image (per process): such a last batch is merged, never dropped."""
    assert sizes(Batches(split(n=9), 4), seed=1) == [4, 5]  # 4 + 4 + 1
    assert sizes(Batches(split(n=10), 4), seed=1) == [4, 4, 2]
    assert sizes(Batches(split(n=11), 4, world=2), seed=1) == [4, 7]  # 3 cannot give two ranks two each
    assert sizes(Batches(split(n=3), 4)) == [3]  # a single batch stays whole
    every = torch.cat([y for _, y, _ in Batches(split(n=9), 4).epoch(1)])
    assert sorted(every.tolist()) == sorted(split(n=9).labels.tolist())  # no image lost


def test_channels_last_keeps_values():
    s = split()
    a = next(Batches(s, 10).epoch())[0]
    b = next(Batches(s, 10, channels_last=True).epoch())[0]
    assert b.is_contiguous(memory_format=torch.channels_last) and torch.equal(a, b)


def test_epoch_seeds_are_distinct_and_stable():
    seeds = {epoch_seed(0, e, p) for e in range(50) for p in ("batches", "dropout")}
    assert len(seeds) == 100
    assert epoch_seed(0, 1, "batches") == epoch_seed(0, 1, "batches") < 2**63
