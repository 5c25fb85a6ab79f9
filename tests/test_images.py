import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from thesislab.data import images
from thesislab.data.images import load_rgb
from thesislab.errors import UserError


def save(tmp_path, img, name="x.png", **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


def test_rgb_round_trips_exactly(tmp_path):
    px = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = load_rgb(save(tmp_path, Image.fromarray(px)))
    assert out.dtype == np.uint8 and np.array_equal(out, px)


def test_greyscale_is_copied_to_three_channels(tmp_path):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    out = load_rgb(save(tmp_path, Image.fromarray(grey, mode="L")))
    assert out.shape == (4, 5, 3)
    assert all(np.array_equal(out[..., c], grey) for c in range(3))


def test_palette_image_is_expanded(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putdata([0, 1])
    out = load_rgb(save(tmp_path, img))
    assert out.tolist() == [[[10, 20, 30], [200, 100, 50]]]


def test_palette_transparency_composites_on_black(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putdata([0, 1])
    out = load_rgb(save(tmp_path, img, transparency=0))
    assert out.tolist() == [[[0, 0, 0], [200, 100, 50]]]


def test_alpha_composites_on_black(tmp_path):
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], dtype=np.uint8)
    out = load_rgb(save(tmp_path, Image.fromarray(rgba, mode="RGBA")))
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[0, 1].tolist() == [0, 0, 0]
    assert np.allclose(out[0, 2], [100, 50, 25], atol=1)
    la = Image.fromarray(np.array([[[90, 255], [90, 0]]], dtype=np.uint8), mode="LA")
    assert load_rgb(save(tmp_path, la, "la.png")).tolist() == [[[90, 90, 90], [0, 0, 0]]]


def test_16_bit_greyscale_keeps_the_top_8_bits(tmp_path):
    # Pillow's own convert("RGB") would clip these to 255 (a white image).
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    p = save(tmp_path, Image.fromarray(values))
    out = load_rgb(p)
    assert out[..., 0].tolist() == [[0, 1, 128, 255]]
    assert np.array_equal(out[..., 0], out[..., 2])


def test_cmyk_jpeg_is_converted(tmp_path):
    img = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # pure red in CMYK
    out = load_rgb(save(tmp_path, img, "c.jpg", quality=100))
    assert out.shape == (3, 3, 3)
    assert out[1, 1, 0] > 200 and out[1, 1, 1] < 60


def test_resize_to_square(tmp_path):
    p = save(tmp_path, Image.new("RGB", (40, 10), (9, 8, 7)))
    out = load_rgb(p, 16)
    assert out.shape == (16, 16, 3) and (out == [9, 8, 7]).all()


def test_not_an_image_names_the_file(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello")
    with pytest.raises(UserError, match=r"notes.png: not an image Pillow can read"):
        load_rgb(p)


def test_truncated_image_names_the_file(tmp_path):
    p = save(tmp_path, Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(UserError, match=r"x.png: corrupt or truncated image"):
        load_rgb(p)


def png_header_only(path, width, height):
    """A PNG whose header claims width x height: decoding it would need gigabytes."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                     + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    p = png_header_only(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(UserError, match=r"bomb.png: image too large to decode safely"):
        load_rgb(p)


def test_limit_is_below_pillows_own(monkeypatch, tmp_path):
    assert images.MAX_PIXELS < Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(images, "MAX_PIXELS", 50)
    p = save(tmp_path, Image.new("RGB", (10, 10)))
    with pytest.raises(UserError, match="too large"):
        load_rgb(p)
