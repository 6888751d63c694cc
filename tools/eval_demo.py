"""Score the demo model on prompts held out of its training, through the real Engine, on the CPU.

    python tools/eval_demo.py [--model PATH] [--threads 1] [--limit N] [--seeds 1] [--json FILE]
                                [--sheet FILE.png]

Each held-out (color, background, shape) combination is asked for in English ("a green star on a
pink background") and in Chinese ("粉色背景上的绿色星形"), 256x256, 9 steps, guidance 0 (the studio's
defaults apart from size); `tools/demo_shapes.py`'s `read_image` reads each image's pixels and the
prompt counts as right only if foreground color, background color and shape all match. Also prints
the time per image with torch limited to `--threads` CPU threads (prompt encoding included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="diffusers folder (default: the shipped assets/demo-model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="only the first N prompts (they alternate en/zh)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per prompt")
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--sheet", help="save a contact sheet of the first 64 images here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from studio.engine.generate import Engine
    from studio.models.demo import demo_assets
    from tools import demo_shapes as shapes

    model = args.model or str(demo_assets())
    engine = Engine(model, "cpu")
    engine.generate(prompt="warm-up", width=256, height=256, steps=9, guidance=0.0, seed=0)
    prompts = shapes.eval_prompts()
    if args.limit:
        prompts = prompts[: args.limit]
    rows, images = [], []
    for i, (prompt, lang, scene) in enumerate(prompts):
        for s in range(args.seeds):
            seed = 1000 * i + s
            t0 = time.perf_counter()
            img, tm = engine.generate(prompt=prompt, width=256, height=256, steps=9, guidance=0.0, seed=seed)
            wall = time.perf_counter() - t0
            got = shapes.read_image(img)
            images.append(img)
            rows.append({"prompt": prompt, "lang": lang, "seed": seed, "want": [scene.fg, scene.bg, scene.shape],
                         "got": [got.fg, got.bg, got.shape], "ok": got.matches(scene), "seconds": wall,
                         "encode_s": tm.encode_s, "denoise_s": tm.denoise_s, "decode_s": tm.decode_s})

    print(f"model: {model}")
    print(f"held-out combos: {len(prompts) // 2}, seeds per prompt: {args.seeds}, 256x256, 9 steps, guidance 0")
    for lang in ("en", "zh"):
        sel = [r for r in rows if r["lang"] == lang]
        if not sel:
            continue
        parts = {k: sum(r["got"][j] == r["want"][j] for r in sel) / len(sel)
                 for j, k in enumerate(("fg", "bg", "shape"))}
        print(f"{lang}: {sum(r['ok'] for r in sel)}/{len(sel)} right = {sum(r['ok'] for r in sel) / len(sel):.1%}"
              f"  (fg {parts['fg']:.1%}, bg {parts['bg']:.1%}, shape {parts['shape']:.1%})")
    secs = [r["seconds"] for r in rows]
    print(f"CPU, {args.threads} thread(s): median {statistics.median(secs):.3f} s per image "
          f"(encode {statistics.median(r['encode_s'] for r in rows):.3f}, "
          f"denoise {statistics.median(r['denoise_s'] for r in rows):.3f}, "
          f"decode {statistics.median(r['decode_s'] for r in rows):.3f}), max {max(secs):.3f} s")
    wrong = [r for r in rows if not r["ok"]]
    for r in wrong[:20]:
        print(f"  wrong: {r['prompt']!r} seed {r['seed']}: want {r['want']} got {r['got']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, ensure_ascii=False, indent=1), "utf-8")
    if args.sheet:
        from PIL import Image

        sheet = Image.new("RGB", (8 * 128, 8 * 128), "white")
        for k, img in enumerate(images[:64]):
            sheet.paste(img.resize((128, 128)), ((k % 8) * 128, (k // 8) * 128))
        sheet.save(args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
