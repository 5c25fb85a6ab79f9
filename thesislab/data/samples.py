"""A sample grid: one row per class, the first few training images of each, labelled."""

from PIL import Image, ImageDraw, ImageFont

from thesislab import io
from thesislab.data.images import load_rgb
from thesislab.data.layout import Layout

CELL = 64  # pixels a sample is shown at; small images are enlarged without smoothing, as they are
PER_ROW = 12
LABEL_WIDTH = 110


def sample_grid(root, layout: Layout, out_png, per_row=PER_ROW):
    rows = len(layout.classes)
    grid = Image.new("RGB", (LABEL_WIDTH + per_row * CELL, rows * CELL), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=16)
    by_class = {}
    for rel, label in layout.files["train"]:
        by_class.setdefault(label, [])
        if len(by_class[label]) < per_row:
            by_class[label].append(rel)
    for label, name in enumerate(layout.classes):
        y = label * CELL
        draw.text((8, y + CELL / 2), name[:12], fill=(0, 0, 0), font=font, anchor="lm")
        for col, rel in enumerate(by_class.get(label, [])):
            img = Image.fromarray(load_rgb(f"{root}/{rel}"))
            img.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
            if img.width < CELL and img.height < CELL:
                scale = CELL // max(img.width, img.height)
                img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
            x = LABEL_WIDTH + col * CELL + (CELL - img.width) // 2
            grid.paste(img, (x, y + (CELL - img.height) // 2))
    with io.atomic_path(out_png) as tmp:
        grid.save(tmp, format="PNG", optimize=True)
