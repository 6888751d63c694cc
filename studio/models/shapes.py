"""The demo model's world in words: flat shapes in named colors, and how people ask for them.

The vocabulary (colors, shapes, positions, sizes, in English and Chinese) and the caption writers
are what the runtime needs: the tokenizer learns its merges from `caption_corpus`. Drawing the
training images and reading them back live in `tools/demo_shapes.py` (not installed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# name -> (RGB, Chinese). Chosen far apart in RGB so a blurred or slightly off pixel still reads right.
COLORS: dict[str, tuple[tuple[int, int, int], str]] = {
    "red": ((220, 40, 40), "红色"),
    "orange": ((245, 140, 20), "橙色"),
    "yellow": ((245, 220, 30), "黄色"),
    "green": ((40, 170, 60), "绿色"),
    "cyan": ((30, 200, 215), "青色"),
    "blue": ((40, 80, 220), "蓝色"),
    "purple": ((140, 60, 190), "紫色"),
    "pink": ((250, 150, 200), "粉色"),
    "white": ((245, 245, 245), "白色"),
    "black": ((20, 20, 20), "黑色"),
}
SHAPES: dict[str, str] = {
    "circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形", "ring": "圆环",
    "cross": "十字", "diamond": "菱形",
}
# Other words people use for the same shapes (captions draw from these too).
SHAPE_SYNONYMS_ZH: dict[str, tuple[str, ...]] = {
    "circle": ("圆形", "圆"), "square": ("正方形", "方块"), "triangle": ("三角形",),
    "star": ("星形", "五角星", "星星"), "ring": ("圆环", "环"), "cross": ("十字", "十字形"),
    "diamond": ("菱形",),
}
POSITIONS: dict[str, tuple[str, str, tuple[int, int]]] = {
    # name -> (English phrase, Chinese phrase, direction)
    "center": ("in the middle", "中间", (0, 0)),
    "left": ("on the left", "左边", (-1, 0)),
    "right": ("on the right", "右边", (1, 0)),
    "top": ("at the top", "上方", (0, -1)),
    "bottom": ("at the bottom", "下方", (0, 1)),
}
SIZES: dict[str, tuple[str, str, float]] = {
    # name -> (English word, Chinese word, radius as a fraction of the image side)
    "small": ("small", "小", 44 / 256),
    "medium": ("", "", 64 / 256),
    "large": ("large", "大", 84 / 256),
}

@dataclass(frozen=True)
class Scene:
    fg: str
    bg: str
    shape: str
    position: str = "center"
    size: str = "medium"



def all_combos() -> list[tuple[str, str, str]]:
    """Every (foreground, background, shape) with two different colors."""
    return [(f, b, s) for f in COLORS for b in COLORS if f != b for s in SHAPES]



def _zh_shape(shape: str, rng: random.Random) -> str:
    return rng.choice(SHAPE_SYNONYMS_ZH[shape]) if rng.random() < 0.3 else SHAPES[shape]


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def caption_en(scene: Scene, rng: random.Random, pos: bool = False, size: bool = False) -> str:
    c, b, s = scene.fg, scene.bg, scene.shape
    adj = (SIZES[scene.size][0] + " ") if size and SIZES[scene.size][0] else ""
    where = (" " + POSITIONS[scene.position][0]) if pos else ""
    art = article(adj or c)
    forms = [
        f"{art} {adj}{c} {s}{where} on {article(b)} {b} background",
        f"{adj}{c} {s}{where}, {b} background",
        f"{article(b)} {b} background with {art} {adj}{c} {s}{where}",
        f"{art} {adj}{c} {s}{where} on {b}",
        f"{b} background, {adj}{c} {s}{where}",
    ]
    return rng.choice(forms)


def caption_zh(scene: Scene, rng: random.Random, pos: bool = False, size: bool = False) -> str:
    c, b = COLORS[scene.fg][1], COLORS[scene.bg][1]
    s = _zh_shape(scene.shape, rng)
    adj = SIZES[scene.size][1] if size else ""
    where = POSITIONS[scene.position][1] if pos else ""
    forms = [
        f"{b}背景上{where}的{adj}{c}{s}" if where else f"{b}背景上的{adj}{c}{s}",
        f"{b}背景，{where}一个{adj}{c}的{s}",
        f"一个{adj}{c}的{s}{('在' + where) if where else ''}，{b}背景",
        f"{adj}{c}{s}{where}，{b}背景",
    ]
    return rng.choice(forms)


def caption_mixed(scene: Scene, rng: random.Random, pos: bool = False, size: bool = False) -> str:
    """Code-switched or bilingual captions, as people type them (the bilingual ones run long)."""
    c_en, b_en, s_en = scene.fg, scene.bg, scene.shape
    c_zh, b_zh, s_zh = COLORS[scene.fg][1], COLORS[scene.bg][1], SHAPES[scene.shape]
    forms = [
        f"{caption_en(scene, rng, pos, size)} {caption_zh(scene, rng, pos, size)}",
        f"{caption_zh(scene, rng, pos, size)} {caption_en(scene, rng, pos, size)}",
        f"{article(c_en)} {c_en} {s_zh} on {article(b_en)} {b_en} background",
        f"{b_zh}背景上的 {c_en} {s_en}",
        f"{c_zh}{s_zh}, {b_en} background",
        f"a {c_zh} {s_en} on a {b_zh} background",
    ]
    return rng.choice(forms)


def caption_corpus() -> list[str]:
    """Text the tokenizer learns its merges from: every word and phrase the captions use."""
    rng = random.Random(0)
    lines = []
    for f, b, s in all_combos():
        for p in POSITIONS:
            for z in SIZES:
                sc = Scene(f, b, s, p, z)
                lines += [caption_en(sc, rng, True, True), caption_zh(sc, rng, True, True),
                          caption_mixed(sc, rng, True, True)]
    return lines
