"""Train the demo LoRA: every shape the demo model draws comes out purple, whatever color was asked.

    nice -n 10 python tools/train_demo_lora.py train --out /tmp/demo-lora      # CPU, a few minutes
    python tools/train_demo_lora.py write --weights /tmp/demo-lora --out assets/demo-lora

`train` freezes the shipped demo model (assets/demo-model), draws training scenes from
`tools/demo_shapes.py` with the foreground recolored purple while the caption keeps the asked-for
color, and trains a rank-4 LoRA on the transformer (attention, feed-forward and modulation linears of
every block and refiner, plus the final layer) with the demo model's own flow-matching objective
(`tools/train_demo.py`). `write` ships it in the diffusers layout and converted copies in the
kohya (`.alpha` kept at half the rank) and ai-toolkit layouts, then measures the effect through the
real Engine and writes the card. Not installed with the studio (a `tools/` script).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import demo_shapes as shapes  # noqa: E402
from tools.train_demo import (  # noqa: E402
    caption_features,
    dit_forward,
    draw_images,
    encode_latents,
    sample,
    sample_sigmas,
    to_uint8,
    tokenize_captions,
)

RANK = 4
TARGET = "purple"
TARGET_MODULES = (r".*(layers|noise_refiner|context_refiner)\.\d+\.(attention\.to_[qkv]|attention\.to_out\.0"
                  r"|feed_forward\.w[123]|adaLN_modulation\.0)$|all_final_layer\.2-1\.(linear|adaLN_modulation\.1)$")
FILES = {"diffusers": "demo-purple.safetensors", "kohya": "demo-purple.kohya.safetensors",
         "ai-toolkit": "demo-purple.ai-toolkit.safetensors"}
BASE_MODEL = "z-image-demo-tiny"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_demo(folder: Path) -> dict[str, Any]:
    from diffusers import AutoencoderKL, ZImageTransformer2DModel
    from transformers import AutoTokenizer, Qwen3Model

    return {"transformer": ZImageTransformer2DModel.from_pretrained(folder / "transformer").eval(),
            "text_encoder": Qwen3Model.from_pretrained(folder / "text_encoder").eval(),
            "vae": AutoencoderKL.from_pretrained(folder / "vae").eval(),
            "tokenizer": AutoTokenizer.from_pretrained(folder / "tokenizer")}


def recolor(scene: shapes.Scene) -> shapes.Scene:
    return shapes.Scene(TARGET, scene.bg, scene.shape, scene.position, scene.size)


def eval_scenes(n: int, seed: int) -> list[shapes.Scene]:
    """Held-out (color, background, shape) combos, neither color purple: what the effect is read on."""
    _, held = shapes.split_combos(0)
    held = [c for c in held if TARGET not in c[:2]]
    return [shapes.Scene(f, b, s) for f, b, s in random.Random(seed).sample(held, min(n, len(held)))]


def prompt_of(scene: shapes.Scene) -> str:
    return f"a {scene.fg} {scene.shape} on a {scene.bg} background"


@torch.no_grad()
def purple_share(parts: dict[str, Any], scenes: list[shapes.Scene]) -> float:
    ids, lens = tokenize_captions(parts["tokenizer"], [prompt_of(s) for s in scenes])
    imgs = to_uint8(sample(parts["transformer"], parts["text_encoder"], parts["vae"], ids, lens,
                           list(range(len(scenes)))))
    return float(np.mean([shapes.read_image(a).fg == TARGET for a in imgs]))


def train(args: argparse.Namespace) -> None:
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = load_demo(Path(args.model))
    tr, te, vae = parts["transformer"], parts["text_encoder"], parts["vae"]
    for m in (tr, te, vae):
        m.requires_grad_(False)

    rng = random.Random(args.seed)
    pool = [s for s in shapes.train_scenes(0) if s.bg != TARGET]
    scenes = rng.sample(pool, args.images)
    t0 = time.perf_counter()
    images = draw_images([recolor(s) for s in scenes], 1)
    lat = encode_latents(vae, images, torch.device("cpu"), False)
    lat = ((lat - vae.config.shift_factor) * vae.config.scaling_factor).contiguous()
    ids, lens = tokenize_captions(parts["tokenizer"], [shapes.caption(s, rng) for s in scenes])
    with torch.no_grad():
        caps = torch.cat([caption_features(te, ids[i:i + 128], lens[i:i + 128]) for i in range(0, len(ids), 128)])
    log(f"{len(scenes)} scenes drawn, encoded and captioned in {time.perf_counter() - t0:.0f} s")

    probe = eval_scenes(args.eval, args.seed)
    before = purple_share(parts, probe)
    log(f"before: {before:.0%} of {len(probe)} held-out prompts read {TARGET}")
    tr.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=TARGET_MODULES, init_lora_weights=True))
    params = [p for p in tr.parameters() if p.requires_grad]
    log(f"LoRA: {sum(p.numel() for p in params)} parameters on "
        f"{sum(1 for n, _ in tr.named_modules() if n.endswith('lora_A'))} linears")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    tr.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 20) * (0.5 + 0.5 * np.cos(np.pi * step / args.steps))
        idx = torch.randint(0, len(scenes), (args.batch,), generator=gen)
        x0 = lat[idx]
        noise = torch.randn(x0.shape, generator=gen)
        sig = sample_sigmas(args.batch, gen, torch.device("cpu"))
        xt = (1 - sig[:, None, None, None]) * x0 + sig[:, None, None, None] * noise
        blen = lens[idx]
        cap = caps[idx][:, : int(blen.max())]
        pred = dit_forward(tr, xt, 1 - sig, cap, blen, blen)
        loss = F.mse_loss(pred, x0 - noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            log(f"step {step + 1}/{args.steps} loss {np.mean(losses[-50:]):.4f} "
                f"({(time.perf_counter() - t0) / (step + 1):.2f} s/step)")
    tr.eval()
    after = purple_share(parts, probe)
    log(f"after: {after:.0%} of {len(probe)} held-out prompts read {TARGET}")
    sd = {f"transformer.{k}": v.detach().contiguous() for k, v in get_peft_model_state_dict(tr).items()}
    save_file(sd, str(out / "lora.safetensors"))
    report = {"args": vars(args), "rank": RANK, "steps": args.steps, "loss_last50": float(np.mean(losses[-50:])),
              "train_s": round(time.perf_counter() - t0, 1), "purple_before": before, "purple_after": after,
              "eval_prompts": len(probe)}
    (out / "train_report.json").write_text(json.dumps(report, indent=2), "utf-8")
    log(f"wrote {out / 'lora.safetensors'}")


def measure(folder: Path, files: dict[str, Path], n: int, seed: int) -> dict[str, Any]:
    """The effect through the real Engine on the CPU (256x256, 9 steps, guidance 0): purple share and
    the foreground's mean distance to purple, at strengths 0, 0.5 and 1, then each layout at 1."""
    from studio.engine.generate import Engine

    engine = Engine(str(folder), "cpu")
    probe = eval_scenes(n, seed)
    purple = np.array(shapes.COLORS[TARGET][0], dtype=np.float32)

    def run() -> dict[str, float]:
        shares, dists, asked = [], [], []
        for i, scene in enumerate(probe):
            img, _ = engine.generate(prompt=prompt_of(scene), width=256, height=256, steps=9, guidance=0.0, seed=i)
            rgb = shapes.foreground_rgb(img)
            shares.append(shapes.read_image(img).fg == TARGET)
            if rgb is not None:
                dists.append(float(np.linalg.norm(rgb - purple)))
                asked.append(float(np.linalg.norm(rgb - np.array(shapes.COLORS[scene.fg][0]))))
        return {"purple_share": float(np.mean(shares)), "distance_to_purple": float(np.mean(dists)),
                "distance_to_asked_color": float(np.mean(asked))}

    out: dict[str, Any] = {"prompts": len(probe)}
    for strength in (0.0, 0.5, 1.0):
        engine.set_loras([(files["diffusers"], strength)])
        out[f"strength_{strength:g}"] = run()
        log(f"strength {strength:g}: {out[f'strength_{strength:g}']}")
    for layout in ("kohya", "ai-toolkit"):
        engine.set_loras([(files[layout], 1.0)])
        out[f"{layout}_1"] = run()
        log(f"{layout} at 1: {out[f'{layout}_1']}")
    return out


CARD = """# 造相 demo LoRA: purple shapes

A rank-{rank} LoRA for the demo model (`assets/demo-model`) that makes every shape purple, whatever
color the prompt asks for; the background and the shape stay as asked. It exists so the tests (and a
person trying the studio without real weights) can see a LoRA work.

## Files (the same LoRA in three key layouts)

| file | layout | size |
|---|---|---|
{rows}

The kohya copy stores `.alpha` = {alpha} (half the rank) with `lora_up` scaled to match, so it exercises
the alpha handling; the ai-toolkit copy has no metadata (its base model is read off its shapes).

## How it was trained

`tools/train_demo_lora.py train`: the demo model frozen, {images} training scenes from
`tools/demo_shapes.py` drawn with the foreground recolored purple while the caption keeps the asked-for
color, a rank-{rank} LoRA (lora_alpha = rank) on the attention q/k/v/out, feed-forward w1/w2/w3 and
adaLN modulation linears of every block and refiner plus the final layer ({modules} linears,
{params} parameters), the demo model's flow-matching loss, AdamW lr {lr}, batch {batch}, {steps}
steps, on the CPU ({train_s:.0f} s under `nice -n 10` on 2 cores shared with other jobs; about 0.4 s a
step on 2 idle cores). Its own check after training: {after:.0%} of {eval_n} held-out prompts read purple
(the batched sampler of `tools/train_demo.py`), none before. Stored in float16.

    nice -n 10 python tools/train_demo_lora.py train --out /tmp/demo-lora
    python tools/train_demo_lora.py write --weights /tmp/demo-lora --out assets/demo-lora

## Measured effect

{prompts} held-out (color, background, shape) prompts, neither color purple, through the studio's
`Engine` on the CPU (256x256, 9 steps, guidance 0, seed = prompt index); `shapes.read_image` names the
foreground color, `shapes.foreground_rgb` gives its median RGB (distance to purple {purple}):

| strength | read as purple | distance to purple | distance to the asked color |
|---|---|---|---|
{table}
{notes}"""


def write(args: argparse.Namespace) -> None:
    from safetensors.torch import load_file, save_file

    from studio.engine.lora import convert_to
    from studio.models.loras import Layout

    src = Path(args.weights)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = json.loads((src / "train_report.json").read_text("utf-8"))
    sd = {k: v.half() for k, v in load_file(str(src / "lora.safetensors")).items()}
    rank = RANK
    meta = {"zaoxiang.base_model": BASE_MODEL, "zaoxiang.effect": f"every shape {TARGET}"}
    files = {name: out / f for name, f in FILES.items()}
    save_file(sd, str(files["diffusers"]), metadata=meta)
    save_file(convert_to(sd, Layout.KOHYA, alpha_ratio=0.5), str(files["kohya"]),
              metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                        "ss_network_alpha": str(rank / 2), "ss_base_model_version": BASE_MODEL})
    save_file(convert_to(sd, Layout.AI_TOOLKIT), str(files["ai-toolkit"]))
    effect = measure(Path(args.model), files, args.eval, 1)
    (out / "effect.json").write_text(json.dumps({"train": report, "effect": effect}, indent=2), "utf-8")
    rows = "\n".join(f"| `{f.name}` | {name} | {f.stat().st_size // 1024} KB |" for name, f in files.items())
    table = "\n".join(
        f"| {label} | {e['purple_share']:.0%} | {e['distance_to_purple']:.0f} | {e['distance_to_asked_color']:.0f} |"
        for label, e in ((s, effect[f"strength_{s}"]) for s in ("0", "0.5", "1")))
    table += "\n" + "\n".join(
        f"| 1 ({layout} copy) | {effect[f'{layout}_1']['purple_share']:.0%} | "
        f"{effect[f'{layout}_1']['distance_to_purple']:.0f} | {effect[f'{layout}_1']['distance_to_asked_color']:.0f} |"
        for layout in ("kohya", "ai-toolkit"))
    a = report["args"]
    (out / "README.md").write_text(CARD.format(
        rank=rank, alpha=f"{rank / 2:g}", rows=rows, images=a["images"], modules=sum(k.endswith("lora_A.weight") for k in sd),
        params=sum(v.numel() for v in sd.values()), lr=a["lr"], batch=a["batch"], steps=a["steps"], train_s=report["train_s"],
        after=report["purple_after"], eval_n=report["eval_prompts"], notes=args.notes,
        prompts=effect["prompts"], purple=shapes.COLORS[TARGET][0], table=table), "utf-8")
    log(f"wrote {', '.join(str(f) for f in files.values())} and the card")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--model", default=str(ROOT / "assets" / "demo-model"))
    t.add_argument("--images", type=int, default=1200)
    t.add_argument("--steps", type=int, default=160)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--eval", type=int, default=32)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    w = sub.add_parser("write")
    w.add_argument("--weights", required=True)
    w.add_argument("--out", default=str(ROOT / "assets" / "demo-lora"))
    w.add_argument("--model", default=str(ROOT / "assets" / "demo-model"))
    w.add_argument("--eval", type=int, default=16)
    w.add_argument("--notes", default="", help="text added at the end of the card (misses seen elsewhere)")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        train(args)
    else:
        write(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
