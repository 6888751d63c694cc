"""Draw the studio's icons into assets/: the 造 seal logo (PNG sizes, ICO, ICNS) and tray variants.

Run once after changing the design: `.venv/bin/python scripts/make_icons.py`. The PNGs are
committed, so the studio itself never needs a CJK font. Small sizes get a Latin "Z" because a
16-pixel 造 is a blur.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SEAL = (200, 55, 45)  # vermilion, like a seal stamp
SEAL_DARK = (150, 32, 28)
IDLE_GREY = (110, 110, 118)
WORKING = (46, 204, 113)
ERROR = (231, 76, 60)
SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
CJK_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
             "/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc")
LATIN_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",)


def _font(candidates: tuple[str, ...], size: int, family_hint: str = "SC") -> ImageFont.FreeTypeFont:
    for path in candidates:
        if not Path(path).exists():
            continue
        for index in range(12):
            try:
                font = ImageFont.truetype(path, size, index=index)
            except OSError:
                break
            if family_hint in font.getname()[0] or not path.endswith(".ttc"):
                return font
    sys.exit(f"make_icons: no font found among {candidates} (install fonts-noto-cjk / fonts-dejavu)")


def _centered_text(draw: ImageDraw.ImageDraw, box: int, text: str, font: ImageFont.FreeTypeFont) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (box - (right - left)) / 2 - left
    y = (box - (bottom - top)) / 2 - top
    draw.text((x, y), text, font=font, fill=(255, 255, 255, 255))


def logo(size: int, colour: tuple[int, int, int] = SEAL) -> Image.Image:
    """The seal: a rounded square with a thin inner frame and the glyph in white, drawn at 4x then reduced."""
    big = size * 4
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    pad = big // 32
    draw.rounded_rectangle((pad, pad, big - pad, big - pad), radius=big // 5, fill=colour + (255,))
    if size >= 48:
        inset = big // 11
        draw.rounded_rectangle((inset, inset, big - inset, big - inset), radius=big // 8,
                               outline=(255, 255, 255, 150), width=max(2, big // 90))
        _centered_text(draw, big, "造", _font(CJK_FONTS, int(big * 0.58)))
    else:
        _centered_text(draw, big, "Z", _font(LATIN_FONTS, int(big * 0.72)))
    return img.resize((size, size), Image.LANCZOS)


def with_badge(base: Image.Image, colour: tuple[int, int, int], mark: str = "") -> Image.Image:
    """A status dot in the lower right corner, ringed in white so it reads on any panel colour."""
    size = base.width
    big = size * 4
    img = base.resize((big, big), Image.LANCZOS)
    draw = ImageDraw.Draw(img)
    r = big * 0.22
    cx = cy = big - r - big * 0.02
    ring = big * 0.045
    draw.ellipse((cx - r - ring, cy - r - ring, cx + r + ring, cy + r + ring), fill=(255, 255, 255, 255))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour + (255,))
    if mark:
        font = _font(LATIN_FONTS, int(r * 1.5))
        left, top, right, bottom = draw.textbbox((0, 0), mark, font=font)
        draw.text((cx - (right - left) / 2 - left, cy - (bottom - top) / 2 - top), mark, font=font,
                  fill=(255, 255, 255, 255))
    return img.resize((size, size), Image.LANCZOS)


def main() -> int:
    ASSETS.mkdir(exist_ok=True)
    images = {size: logo(size) for size in SIZES}
    for size, img in images.items():
        img.save(ASSETS / f"icon-{size}.png", optimize=True)
    images[256].save(ASSETS / "icon.png", optimize=True)
    images[256].save(ASSETS / "icon.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)],
                     append_images=[images[s] for s in (16, 24, 32, 48, 64, 128)])
    images[1024].save(ASSETS / "icon.icns", append_images=[images[s] for s in (16, 32, 64, 128, 256, 512)])
    tray = 64
    logo(tray).save(ASSETS / "tray-idle.png", optimize=True)
    with_badge(logo(tray), WORKING).save(ASSETS / "tray-working.png", optimize=True)
    with_badge(logo(tray, IDLE_GREY), ERROR, "!").save(ASSETS / "tray-error.png", optimize=True)
    print(f"make_icons: wrote {len(list(ASSETS.glob('*.png')))} PNG, icon.ico and icon.icns into {ASSETS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
