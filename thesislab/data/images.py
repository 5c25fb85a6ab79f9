"""Decoding one image file into the RGB uint8 array the pipeline works with.

Any mode Pillow reads becomes 8-bit RGB the same way everywhere (stats, training, the sample grid):
greyscale is copied to the three channels, palette images are expanded, transparency is composited onto
black, 16-bit images keep their top 8 bits. Files that are not images, truncated or corrupt files and
decompression bombs raise UserError naming the file.
"""

import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from thesislab.errors import UserError

# Far above any training image; Pillow's own guard (about 89 M pixels) would let a 178 M pixel file through
# with a warning and decode it into gigabytes of memory first.
MAX_PIXELS = 40_000_000


def load_rgb(path, size=None) -> np.ndarray:
    """Return the image at `path` as an (H, W, 3) uint8 array, resized to size x size if `size` is given."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_size(path, img)
                img = ImageOps.exif_transpose(img) if _has_exif(img) else img
                img = to_rgb(img)
                if size is not None and img.size != (size, size):
                    # Squash rather than crop: what transforms.Resize((s, s)) did in the thesis.
                    img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
                return np.asarray(img, dtype=np.uint8)
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: image too large to decode safely (limit {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image Pillow can read") from None
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path}: corrupt or truncated image ({err})") from None


def _check_size(path, img):
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise UserError(f"{path}: image too large to decode safely ({w}x{h} > {MAX_PIXELS:,} pixels)")
    if w < 1 or h < 1:
        raise UserError(f"{path}: image has no pixels")


def _has_exif(img):
    # Only JPEG/TIFF/WebP photos carry an orientation tag worth the lookup; PNGs skip it (the hot path).
    return img.format in ("JPEG", "MPO", "TIFF", "WEBP")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (see the module docstring for the rules)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's convert("RGB") clips 16-bit values at 255 (a white image); keep the top 8 bits instead.
        arr = np.asarray(img).astype(np.uint32)
        if img.mode == "I":
            # 32-bit integer images from 16-bit PNGs hold 0..65535.
            arr = np.clip(arr, 0, 65535)
        grey = (arr >> 8).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(arr * scale, 0, 255).round().astype(np.uint8)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")
