"""The demo model's training world: drawn scenes, the held-out split, random captions and the
pixel checker that scores what the model draws.

`draw` makes the training images (PIL, reproducible from a seed), `caption` picks what a person
would type in English, Chinese or a mix of both, and `read_image` reads an image back into
(foreground color, background color, shape) by plain geometry, so the model's quality is a number,
not an impression. The vocabulary is the runtime's (`studio.models.shapes`), re-exported here so
that training, evaluation and tests read one module. Pure numpy + PIL: no torch.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from studio.models.shapes import (  # noqa: F401 (re-exported: one module for the whole world)
    COLORS,
    POSITIONS,
    SHAPE_SYNONYMS_ZH,
    SHAPES,
    SIZES,
    Scene,
    all_combos,
    article,
    caption_corpus,
    caption_en,
    caption_mixed,
    caption_zh,
)

MARGIN = 8 / 256  # shapes never touch the border, so the border is all background


@dataclass(frozen=True)
class Reading:
    """What `read_image` saw; `shape` is None when no foreground stands out from the background."""

    fg: str | None
    bg: str
    shape: str | None

    def matches(self, scene: Scene) -> bool:
        return (self.fg, self.bg, self.shape) == (scene.fg, scene.bg, scene.shape)


# ---------------------------------------------------------------------------------------------
# Drawing


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Polygon for the polygonal shapes (None for circle and ring, drawn as ellipses)."""
    if shape == "square":
        h = 0.85 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + 0.95 * r, cy + 0.8 * r), (cx - 0.95 * r, cy + 0.8 * r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else 0.42 * r
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    if shape == "cross":
        a = r / 3
        return [(cx - a, cy - r), (cx + a, cy - r), (cx + a, cy - a), (cx + r, cy - a), (cx + r, cy + a),
                (cx + a, cy + a), (cx + a, cy + r), (cx - a, cy + r), (cx - a, cy + a), (cx - r, cy + a),
                (cx - r, cy - a), (cx - a, cy - a)]
    return None


def geometry(scene: Scene, side: int = 256) -> tuple[float, float, float]:
    """Centre and radius in pixels: the shape sits in its named region, `MARGIN` from the border."""
    r = SIZES[scene.size][2] * side
    reach = side / 2 - MARGIN * side - r  # how far the centre may move before the shape hits the margin
    dx, dy = POSITIONS[scene.position][2]
    return side / 2 + dx * reach, side / 2 + dy * reach, r


def draw(scene: Scene, side: int = 256, supersample: int = 2) -> Image.Image:
    """The scene as an RGB image, drawn at `supersample`× and reduced so the edges are smooth."""
    big = side * supersample
    img = Image.new("RGB", (big, big), COLORS[scene.bg][0])
    d = ImageDraw.Draw(img)
    cx, cy, r = (v * supersample for v in geometry(scene, side))
    fill = COLORS[scene.fg][0]
    poly = _outline(scene.shape, cx, cy, r)
    if poly is not None:
        d.polygon(poly, fill=fill)
    else:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        if scene.shape == "ring":
            ri = 0.55 * r
            d.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=COLORS[scene.bg][0])
    return img.resize((side, side), Image.Resampling.BOX) if supersample > 1 else img


# ---------------------------------------------------------------------------------------------
# Scenes, the held-out split and captions


# Combos the tests and the README promise: always trained on, never held out.
ALWAYS_TRAINED = {("red", "white", "star"), ("red", "blue", "circle"), ("yellow", "black", "circle"),
                  ("blue", "yellow", "circle")}


def split_combos(seed: int = 0, held_out_fraction: float = 0.1) -> tuple[list, list]:
    """(train, held-out) combos. Held-out combos are never drawn for training; the eval uses them."""
    combos = all_combos()
    rng = random.Random(seed)
    candidates = [c for c in combos if c not in ALWAYS_TRAINED]
    held = set(rng.sample(candidates, round(held_out_fraction * len(combos))))
    return [c for c in combos if c not in held], sorted(held)


def train_scenes(seed: int = 0) -> list[Scene]:
    """Every training image: each trained combo at each position and size."""
    train, _ = split_combos(seed)
    return [Scene(f, b, s, p, z) for (f, b, s) in train for p in POSITIONS for z in SIZES]


def caption(scene: Scene, rng: random.Random) -> str:
    """One random caption: 40% English, 40% Chinese, 20% mixed; some name the position or size."""
    u = rng.random()
    pos, size = rng.random() < 0.35, rng.random() < 0.35
    if u < 0.4:
        return caption_en(scene, rng, pos, size)
    if u < 0.8:
        return caption_zh(scene, rng, pos, size)
    return caption_mixed(scene, rng, pos, size)


def eval_prompts(seed: int = 0) -> list[tuple[str, str, Scene]]:
    """(prompt, language, expected scene) for every held-out combo, in English and in Chinese."""
    _, held = split_combos(seed)
    out = []
    for f, b, s in held:
        scene = Scene(f, b, s)
        out.append((f"{article(f)} {f} {s} on {article(b)} {b} background", "en", scene))
        out.append((f"{COLORS[b][1]}背景上的{COLORS[f][1]}{SHAPES[s]}", "zh", scene))
    return out


# ---------------------------------------------------------------------------------------------
# The checker


_PALETTE_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[n][0] for n in _PALETTE_NAMES], dtype=np.float32)


def nearest_color(rgb: np.ndarray) -> str:
    d = ((_PALETTE - np.asarray(rgb, dtype=np.float32)[None]) ** 2).sum(-1)
    return _PALETTE_NAMES[int(d.argmin())]


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2-D integer points (Andrew's monotone chain + shoelace)."""
    pts = np.unique(points, axis=0)
    if len(pts) < 3:
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))].tolist()

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = np.array(lower[:-1] + upper[:-1], dtype=np.float64)
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clean(mask: np.ndarray) -> np.ndarray:
    """3×3 majority filter: drops speckle and fills pinholes without moving edges much."""
    p = np.pad(mask.astype(np.int8), 1)
    h, w = mask.shape
    total = sum(p[i:i + h, j:j + w] for i in range(3) for j in range(3))
    return total >= 5


def _largest_blob(mask: np.ndarray, cell: int = 4) -> np.ndarray:
    """Keep the largest connected blob. Found on a `cell`× coarser grid (fast in pure Python), then
    cut back out of the full-resolution mask, one coarse cell of slack around it."""
    h, w = mask.shape
    coarse = mask[: h - h % cell, : w - w % cell].reshape(h // cell, cell, w // cell, cell).any((1, 3))
    ch, cw = coarse.shape
    labels = np.zeros((ch, cw), dtype=np.int32)
    sizes = [0]
    for y0, x0 in zip(*np.nonzero(coarse)):
        if labels[y0, x0]:
            continue
        n = len(sizes)
        labels[y0, x0] = n
        stack, size = [(int(y0), int(x0))], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < ch and 0 <= nx < cw and coarse[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = n
                    stack.append((ny, nx))
        sizes.append(size)
    if len(sizes) <= 2:
        return mask
    keep = labels == int(np.argmax(sizes))
    grown = keep.copy()  # one cell of slack, so edge pixels of the blob are not cut off
    grown[1:] |= keep[:-1]
    grown[:-1] |= keep[1:]
    grown[:, 1:] |= keep[:, :-1]
    grown[:, :-1] |= keep[:, 1:]
    full = np.zeros_like(mask)
    full[: ch * cell, : cw * cell] = np.repeat(np.repeat(grown, cell, 0), cell, 1)
    return mask & full


def radial_peaks(mask: np.ndarray, bins: int = 90, prominence: float = 0.22) -> int:
    """How many points the outline has: peaks of the centre-to-edge distance around the centroid
    that stand out by `prominence` of the largest distance. A star has 5, a cross 4 (8 when its arm
    ends are razor sharp), a triangle 3, a circle none; blur rounds corners but keeps the count."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    p = np.pad(mask, 1)
    inside = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    by, bx = np.nonzero(mask & ~inside)
    k = ((np.arctan2(by - cy, bx - cx) + np.pi) / (2 * np.pi) * bins).astype(int) % bins
    prof = np.zeros(bins)
    np.maximum.at(prof, k, np.hypot(by - cy, bx - cx))
    for _ in range(3):  # small shapes leave some angle bins without an edge pixel
        empty = prof == 0
        prof[empty] = np.maximum(np.roll(prof, 1), np.roll(prof, -1))[empty]
    prof = np.convolve(np.concatenate([prof[-2:], prof, prof[:2]]), np.ones(5) / 5, "valid")
    need, n, peaks = prominence * prof.max(), len(prof), 0
    for i in range(n):
        if not (prof[i] >= prof[i - 1] and prof[i] > prof[(i + 1) % n]):
            continue
        drops = []
        for step in (1, -1):  # the lowest point before a higher peak, walking each way round
            low, j = prof[i], i
            for _ in range(n - 1):
                j = (j + step) % n
                low = min(low, prof[j])
                if prof[j] > prof[i]:
                    break
            drops.append(prof[i] - low)
        peaks += min(drops) > need
    return peaks


def features(mask: np.ndarray) -> dict[str, float]:
    """Geometry of a foreground mask: fill of its box, solidity, hole, top/bottom balance, widths."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    hgt, wid = y1 - y0 + 1, x1 - x0 + 1
    area = float(mask.sum())
    box = mask[y0:y1 + 1, x0:x1 + 1]
    # Solidity against the hull of pixel corners (so a filled square scores 1.0); each row's two
    # extreme pixels span the same hull as all of them.
    rows = np.nonzero(mask.any(1))[0]
    left = mask[rows].argmax(1)
    right = mask.shape[1] - 1 - mask[rows, ::-1].argmax(1)
    corners = np.concatenate([np.stack([left, rows], 1), np.stack([left, rows + 1], 1),
                              np.stack([right + 1, rows], 1), np.stack([right + 1, rows + 1], 1)])
    hull = _hull_area(corners)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    rr = 0.25 * min(hgt, wid)
    yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
    centre = (yy - cy) ** 2 + (xx - cx) ** 2 <= rr * rr
    top, bottom = box[: hgt // 2].sum(), box[(hgt + 1) // 2:].sum()
    return {
        "fill": area / float(hgt * wid),
        "solidity": area / hull if hull else 0.0,
        "centre_fill": float(mask[centre].mean()) if centre.any() else 1.0,
        "bottom_over_top": float(bottom) / max(float(top), 1.0),
        "aspect": wid / float(hgt),
        "area": area,
        "peaks": float(radial_peaks(mask)),
    }


def classify_shape(f: dict[str, float]) -> str:
    """Shape from geometry alone; thresholds sit halfway between the ideal shapes' values."""
    if f["centre_fill"] < 0.4:
        return "ring"  # a hole where every other shape is solid
    if f["solidity"] < 0.86:  # star (ideal 0.49) or cross (0.71): told apart by their points,
        if f["peaks"] == 5:  # which survive the blur that rounds a star's tips towards a cross's
            return "star"
        if f["peaks"] in (4, 8):
            return "cross"
        return "star" if f["solidity"] < 0.62 else "cross"
    if f["fill"] > 0.89:
        return "square"  # ideal 1.0
    if f["fill"] > 0.66:
        return "circle"  # ideal 0.785
    return "triangle" if f["bottom_over_top"] > 1.7 else "diamond"  # ideal 2.6 vs 1.0


def _separate(image: Image.Image | np.ndarray) -> tuple[np.ndarray, str, np.ndarray | None, np.ndarray | None]:
    """(pixels, background name, foreground blob mask or None, the blob's core or None)."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image).astype(np.float32)
    h, w, _ = arr.shape
    b = max(2, h // 64)
    border = np.concatenate([arr[:b].reshape(-1, 3), arr[-b:].reshape(-1, 3),
                             arr[:, :b].reshape(-1, 3), arr[:, -b:].reshape(-1, 3)])
    names = [_PALETTE_NAMES[i] for i in ((border[:, None] - _PALETTE[None]) ** 2).sum(-1).argmin(1)]
    bg = max(set(names), key=names.count)
    bg_rgb = np.median(border[np.array(names) == bg], axis=0)
    dist = np.sqrt(((arr - bg_rgb) ** 2).sum(-1))
    mask = _clean(dist > 45.0)
    if mask.sum() < 0.004 * h * w:
        return arr, bg, None, None
    mask = _largest_blob(mask)
    # Colour from the blob's core (far from the background), so blurred edges do not pull it.
    core = mask & (dist > np.percentile(dist[mask], 50))
    return arr, bg, mask, core if core.sum() >= 10 else mask


def foreground_rgb(image: Image.Image | np.ndarray) -> np.ndarray | None:
    """The median RGB of the foreground shape's core (None when nothing stands out from the background).

    A number that moves smoothly with the color, where `read_image` names the nearest palette color.
    """
    arr, _, _, core = _separate(image)
    return None if core is None else np.median(arr[core], axis=0)


def read_image(image: Image.Image | np.ndarray) -> Reading:
    """(foreground color, background color, shape) of an image, read off its pixels.

    Background: the color most border pixels are nearest to. Foreground: the pixels far from the
    background's measured color, cleaned to the largest blob; its median color names it.
    """
    arr, bg, mask, core = _separate(image)
    if mask is None or core is None:
        return Reading(None, bg, None)
    return Reading(nearest_color(np.median(arr[core], axis=0)), bg, classify_shape(features(mask)))
