"""A deterministic generator of speed-limit-sign photos, standing in for the thesis's private Taiwanese set.

11 classes, 20 to 110 km/h: a red ring, a white disc and black digits, seen by day, at dusk and at night,
in rain or fog, blurred, noisy, rotated, scaled, off-centre, partly hidden, on cluttered backgrounds.
Close digits (20/25, 30/80, 60/80, 100/110) and dark, low-contrast night scenes keep it from being trivially
separable.

Every image is drawn from its own random stream, seeded by (seed, split, class, index): the same params
give the same pixels in any order or process, and asking for more images per class keeps the first ones.
"""

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from thesislab.parallel import chunked, map_chunks

# The thesis names 11 classes from 20 to 110 km/h without listing them: the ten multiples of ten, and 25
# for the eleventh (an assumption; it also makes 20/25 a close pair, as real sets have).
SPEEDS = (20, 25, 30, 40, 50, 60, 70, 80, 90, 100, 110)
CLASSES = tuple(f"{kmh:03d}kmh" for kmh in SPEEDS)  # zero-padded so that sorting keeps numeric order
SPLIT_IDS = {"train": 0, "test": 1}
SUPERSAMPLE = 2  # draw at twice the size, then shrink: anti-aliased edges like a real camera

LIGHTING = (("day", 0.55), ("dusk", 0.2), ("night", 0.25))
WEATHER = (("clear", 0.7), ("rain", 0.15), ("fog", 0.15))


def generate(out_dir, per_split: dict, size: int, seed: int, workers=None, progress=True):
    """Write <out_dir>/<split>/<class>/<index>.png for per_split = {"train": n, "test": m} images a class."""
    out_dir = Path(out_dir)
    for split in per_split:
        for name in CLASSES:
            (out_dir / split / name).mkdir(parents=True, exist_ok=True)
    todo = [(split, label, i) for split, n in per_split.items() for label in range(len(CLASSES)) for i in range(n)]
    for _ in map_chunks(_render_and_save, chunked(todo, 128), out_dir, size, seed, desc="speedsigns",
                        progress=progress, workers=workers):
        pass


def _render_and_save(chunk, out_dir, size, seed):
    for split, label, index in chunk:
        render(seed, split, label, index, size).save(out_dir / split / CLASSES[label] / f"{index:05d}.png")


def render(seed, split, label, index, size) -> Image.Image:
    """One sign photo, size x size RGB, fully determined by its arguments."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], label, index])
    w = size * SUPERSAMPLE
    lighting = _pick(rng, LIGHTING)
    weather = _pick(rng, WEATHER)

    scene = _background(rng, w)
    sign, (x0, y0) = _place_sign(rng, scene, SPEEDS[label], w)
    _occlude(rng, scene, sign, (x0, y0))
    arr = np.asarray(scene, dtype=np.float32) / 255.0
    mask = _sign_mask(sign, (x0, y0), w)
    arr = _light(rng, arr, mask, lighting)
    arr = _weather(rng, arr, weather)
    img = Image.fromarray(_to_uint8(arr))
    img = _blur(rng, img)
    img = img.resize((size, size), Image.Resampling.BOX)
    arr = np.asarray(img, dtype=np.float32)
    noise_sigma = rng.uniform(1.0, 4.0) if lighting == "day" else rng.uniform(2.0, 6.0)
    arr = arr + rng.normal(0.0, noise_sigma, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))


def _pick(rng, options):
    names, weights = zip(*options)
    return names[rng.choice(len(names), p=np.array(weights) / sum(weights))]


def _color(rng, base, spread):
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in base)


# --- scene --------------------------------------------------------------------------------------------

SKIES = ((135, 175, 215), (190, 200, 210), (120, 140, 160), (200, 180, 150))
GROUNDS = ((90, 110, 70), (110, 105, 100), (70, 80, 60), (140, 130, 110))
CLUTTER = ((60, 90, 40), (40, 60, 30), (120, 110, 100), (150, 150, 155), (90, 70, 50), (200, 200, 195),
           (180, 60, 50), (60, 80, 150), (220, 190, 80), (30, 30, 35))


def _background(rng, w):
    sky = np.array(_color(rng, SKIES[rng.integers(len(SKIES))], 25), dtype=np.float32)
    ground = np.array(_color(rng, GROUNDS[rng.integers(len(GROUNDS))], 25), dtype=np.float32)
    horizon = rng.uniform(0.3, 0.8)
    t = np.clip((np.linspace(0, 1, w)[:, None] - horizon) * 8 + 0.5, 0, 1)[:, :, None]
    arr = np.broadcast_to(sky * (1 - t) + ground * t, (w, w, 3))
    scene = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(scene)
    for _ in range(rng.integers(3, 10)):
        _clutter_shape(rng, draw, w)
    return scene


def _clutter_shape(rng, draw, w):
    fill = _color(rng, CLUTTER[rng.integers(len(CLUTTER))], 30)
    kind = rng.integers(4)
    x, y = rng.uniform(-0.2, 1.0, 2) * w
    sx, sy = rng.uniform(0.08, 0.6, 2) * w
    box = [x, y, x + sx, y + sy]
    if kind == 0:  # building, board, vehicle
        draw.rectangle(box, fill=fill)
    elif kind == 1:  # tree, bush
        draw.ellipse(box, fill=fill)
    elif kind == 2:  # pole, wire, branch
        draw.line([(x, y), (x + rng.uniform(-0.5, 0.5) * w, y + sy)], fill=fill, width=int(rng.integers(1, 5)))
    else:  # another round sign (blue, no digits): the net must read the digits, not find a circle
        draw.ellipse(box[:2] + [x + sx * 0.5, y + sx * 0.5], fill=(200, 30, 30))
        draw.ellipse([x + sx * 0.06, y + sx * 0.06, x + sx * 0.44, y + sx * 0.44], fill=(40, 80, 170))


# --- the sign -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _font(px):
    return ImageFont.load_default(size=px)


def _draw_sign(rng, kmh, r):
    """An RGBA sign of radius r on a transparent square: red ring, white disc, black digits."""
    side = 2 * r + 2
    sign = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(sign)
    red = _color(rng, (200, 30, 35), 30)
    white = _color(rng, (235, 235, 230), 15)
    ink = _color(rng, (20, 20, 25), 15)
    inner = r * rng.uniform(0.74, 0.82)
    c = side / 2
    d.ellipse([c - r, c - r, c + r, c + r], fill=red + (255,))
    d.ellipse([c - inner, c - inner, c + inner, c + inner], fill=white + (255,))
    text = str(kmh)
    px = max(6, int(inner * (1.2 if len(text) == 2 else 0.9)))
    stroke = int(rng.integers(0, 2)) if px >= 14 else 0  # regular or bold digits
    d.text((c, c + inner * 0.04), text, font=_font(px), fill=ink + (255,), anchor="mm", stroke_width=stroke,
           stroke_fill=ink + (255,))
    return sign


def _place_sign(rng, scene, kmh, w):
    # Cropped around the sign, as sign datasets are: it fills most of the frame, never all of it.
    r = int(w * rng.uniform(0.32, 0.46))
    sign = _draw_sign(rng, kmh, r)
    squash = rng.uniform(0.72, 1.0)  # seen from the side
    sign = sign.resize((max(4, int(sign.width * squash)), sign.height), Image.Resampling.BICUBIC)
    sign = sign.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BICUBIC, expand=True)
    cx = w / 2 + rng.uniform(-0.1, 0.1) * w
    cy = w / 2 + rng.uniform(-0.1, 0.1) * w
    draw = ImageDraw.Draw(scene)
    pole = _color(rng, (120, 120, 125), 20)
    draw.rectangle([cx - w * 0.025, cy, cx + w * 0.025, w], fill=pole)
    x0, y0 = int(cx - sign.width / 2), int(cy - sign.height / 2)
    scene.paste(sign, (x0, y0), sign)
    return sign, (x0, y0)


def _sign_mask(sign, origin, w):
    mask = Image.new("L", (w, w), 0)
    mask.paste(sign.getchannel("A"), origin)
    return np.asarray(mask, dtype=np.float32)[:, :, None] / 255.0


def _occlude(rng, scene, sign, origin):
    if rng.random() > 0.25:
        return
    x0, y0 = origin
    draw = ImageDraw.Draw(scene)
    side = rng.integers(4)
    span = rng.uniform(0.15, 0.35)
    bw, bh = sign.width, sign.height
    if side == 0:
        box = [x0 - bw, y0 - bh, x0 + bw * span, y0 + 2 * bh]
    elif side == 1:
        box = [x0 + bw * (1 - span), y0 - bh, x0 + 2 * bw, y0 + 2 * bh]
    elif side == 2:
        box = [x0 - bw, y0 - bh, x0 + 2 * bw, y0 + bh * span]
    else:
        box = [x0 - bw, y0 + bh * (1 - span), x0 + 2 * bw, y0 + 2 * bh]
    fill = _color(rng, CLUTTER[rng.integers(3)], 25)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)


# --- conditions ---------------------------------------------------------------------------------------


def _light(rng, arr, sign_mask, lighting):
    if lighting == "day":
        gain = rng.uniform(0.85, 1.15)
        return np.power(np.clip(arr * gain, 0, 1), rng.uniform(0.8, 1.25))
    if lighting == "dusk":
        tint = np.array([1.1, 0.9, 0.7], dtype=np.float32)
        return arr * rng.uniform(0.40, 0.65) * tint
    # Night: a dark, blue-tinted scene; the retro-reflective sign catches some headlight.
    tint = np.array([0.85, 0.9, 1.1], dtype=np.float32)
    scene_gain = rng.uniform(0.08, 0.22)
    sign_gain = scene_gain * rng.uniform(1.6, 3.0)
    out = arr * tint * (scene_gain * (1 - sign_mask) + sign_gain * sign_mask)
    if rng.random() < 0.35:  # glare from a lamp or headlight
        w = arr.shape[0]
        yy, xx = np.mgrid[0:w, 0:w].astype(np.float32)
        gx, gy = rng.uniform(0, w, 2)
        blob = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (w * 0.12) ** 2))
        out = out + rng.uniform(0.2, 0.6) * blob[:, :, None]
    return out


def _weather(rng, arr, weather):
    if weather == "fog":
        # Light grey by day, dark grey by night: fog lifts the shadows and flattens the contrast.
        haze = np.clip(float(arr.mean()) * rng.uniform(1.2, 1.8), 0.08, 0.85)
        alpha = rng.uniform(0.3, 0.6)
        return arr * (1 - alpha) + haze * alpha
    if weather == "rain":
        w = arr.shape[0]
        streaks = Image.new("L", (w, w), 0)
        d = ImageDraw.Draw(streaks)
        slant = rng.uniform(-0.3, 0.3)
        for _ in range(rng.integers(20, 60)):
            x, y = rng.uniform(0, w, 2)
            length = rng.uniform(0.05, 0.2) * w
            d.line([(x, y), (x + slant * length, y + length)], fill=int(rng.integers(90, 200)), width=1)
        s = np.asarray(streaks, dtype=np.float32)[:, :, None] / 255.0
        return arr * rng.uniform(0.75, 0.9) * (1 - 0.5 * s) + 0.7 * s * max(float(arr.mean()), 0.15)
    return arr


def _blur(rng, img):
    radius = rng.uniform(0.0, 1.3)
    if rng.random() < 0.15:  # motion blur: average of a few horizontally shifted copies
        arr = np.asarray(img, dtype=np.float32)
        k = int(rng.integers(2, 5))
        arr = sum(np.roll(arr, s, axis=1) for s in range(k)) / k
        img = Image.fromarray(_to_uint8(arr / 255.0))
    return img.filter(ImageFilter.GaussianBlur(radius)) if radius > 0.3 else img


def _to_uint8(arr):
    """[0, 1] floats to uint8 pixels."""
    return (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
