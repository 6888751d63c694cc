"""Train the demo ControlNet: the demo model learns to put its shape where a canny map's edges are.

    python tools/train_demo_controlnet.py train --out /tmp/demo-cn   # CPU, 14 min of wall time
    python tools/train_demo_controlnet.py write --weights /tmp/demo-cn --out assets/demo-controlnet

`train` freezes the shipped demo model (assets/demo-model) and trains only the ControlNet's own
modules (control blocks, control refiner, control patch embedder; the embedders and refiners are
the transformer's, shared the way `ZImageControlNetModel.from_transformer` shares them at run time)
on scenes from `tools/demo_shapes.py` at 128x128: the control input is the canny map of the scene
(`studio.engine.control_maps.canny`, VAE-encoded as the pipeline encodes it, the 17 inpaint channels
zero), the target the scene itself, under the demo model's flow-matching loss. The control blocks
start as copies of the transformer blocks they feed and their output projections at zero (the
ControlNet recipe: training starts from "no effect"). It stops at `--minutes` of wall time.
`write` ships it in float16 in the diffusers layout (the path `studio.models.controlnets` loads)
and writes the card with `measure`'s numbers: how well the edges of what the Engine draws match the
control map's edges, with the ControlNet and without it. Not installed with the studio.
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
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import demo_shapes as shapes  # noqa: E402
from tools.make_demo_controlnet import demo_config  # noqa: E402
from tools.train_demo import log  # noqa: E402

SIDE = 128  # training (and measuring) size: 8x8 image tokens keep a CPU step near a second
EDGE_BLUR_PX = 2.0  # edges are compared blurred by this much: a pixel or two off still counts
PROMPT = "a {fg} {shape} on a {bg} background"


# --- the measure -------------------------------------------------------------------------------


def edges(image: Image.Image) -> np.ndarray:
    """Canny edges of `image` as a boolean array (the studio's own canny, as a control map is made)."""
    from studio.engine.control_maps import canny

    return np.asarray(canny(image).convert("L")) > 127


def edge_match(image: Image.Image, control_edges: np.ndarray, blur_px: float = EDGE_BLUR_PX) -> float:
    """How well `image`'s edges lie on `control_edges`: the correlation (-1..1) of its gradient
    magnitude with the control edges, both blurred by `blur_px`. No threshold on the drawn image:
    the demo model draws soft edges that a canny threshold would miss altogether."""
    import cv2

    gray = np.asarray(image.convert("L"), np.float32)
    if gray.shape != control_edges.shape:
        raise ValueError(f"image {gray.shape} vs control edges {control_edges.shape}")
    magnitude = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3))
    drawn = cv2.GaussianBlur(magnitude, (0, 0), blur_px)
    wanted = cv2.GaussianBlur(control_edges.astype(np.float32), (0, 0), blur_px)
    if drawn.std() == 0 or wanted.std() == 0:
        return 0.0
    return float(np.corrcoef(drawn.ravel(), wanted.ravel())[0, 1])


def probe_scenes(n: int, seed: int) -> list[shapes.Scene]:
    """Scenes away from the centre (where the demo model puts a shape it is not told where to put),
    from held-out (color, background, shape) combos: the ControlNet must move the shape there."""
    _, held = shapes.split_combos(0)
    rng = random.Random(seed)
    corners = [p for p in shapes.POSITIONS if p != "center"]
    return [shapes.Scene(f, b, s, rng.choice(corners), "large") for f, b, s in rng.sample(held, min(n, len(held)))]


def measure(controlnet: str | Path, engine: Any, n: int = 8, steps: int = 8, scale: float = 1.0,
            side: int = SIDE) -> dict[str, Any]:
    """Edge correlation against each probe scene's canny map, through the real `engine` (an Engine
    on the demo model), with the ControlNet (control image: the scene drawn) and without it (same
    prompt and seed)."""
    from studio.engine.images_in import ControlInput, ImageInputs

    images_in = engine.images_in
    with_cn, without = [], []
    for i, scene in enumerate(probe_scenes(3 * n, 7)):
        picture = shapes.draw(scene, side)
        target = edges(picture)
        if not target.any():  # colours of one grey level (green on purple): canny sees no edge
            continue
        if len(with_cn) == n:
            break
        args = dict(prompt=PROMPT.format(fg=scene.fg, shape=scene.shape, bg=scene.bg), width=side, height=side,
                    steps=steps, guidance=0.0, seed=i)
        plain, _ = engine.generate(**args)
        made = images_in.run(inputs=ImageInputs(control=ControlInput(image=picture, controlnet=str(controlnet),
                                                                     kind="canny", scale=scale)), **args)
        with_cn.append(edge_match(made.image, target))
        without.append(edge_match(plain, target))
    return {"scenes": len(with_cn), "steps": steps, "side": side, "scale": scale,
            "edge_corr_with": round(float(np.mean(with_cn)), 4), "edge_corr_without": round(float(np.mean(without)), 4),
            "per_scene_with": [round(v, 3) for v in with_cn], "per_scene_without": [round(v, 3) for v in without]}


# --- training ----------------------------------------------------------------------------------


def build(transformer: Any) -> Any:
    """The demo-config ControlNet, its control blocks copied from the transformer blocks they feed
    and its output projections zeroed, sharing the transformer's embedders and refiners."""
    from diffusers import ZImageControlNetModel

    cfg = demo_config()
    model = ZImageControlNetModel(**cfg)
    model.gradient_checkpointing = False  # the class reads it, and only ModelMixin's setter defines it
    with torch.no_grad():
        for block, place in zip(model.control_layers, cfg["control_layers_places"]):
            own = block.state_dict()
            base = transformer.layers[place].state_dict()
            own.update({k: v.clone() for k, v in base.items() if k in own and own[k].shape == v.shape})
            block.load_state_dict(own)
        for block, place in zip(model.control_noise_refiner, cfg["control_refiner_layers_places"]):
            own = block.state_dict()
            base = transformer.noise_refiner[place].state_dict()
            own.update({k: v.clone() for k, v in base.items() if k in own and own[k].shape == v.shape})
            block.load_state_dict(own)
        for name, p in model.named_parameters():
            if "after_proj" in name or "before_proj" in name:
                p.zero_()
    return ZImageControlNetModel.from_transformer(model, transformer)


def own_parameters(controlnet: Any) -> dict[str, torch.nn.Parameter]:
    """The ControlNet's own weights (what is trained and shipped), not the transformer's it shares."""
    return {n: p for n, p in controlnet.named_parameters() if n.startswith("control")}


@torch.no_grad()
def encode(vae: Any, images: list[Image.Image]) -> torch.Tensor:
    """Latents in the transformer's space, as the pipelines encode init and control images."""
    out = []
    for i in range(0, len(images), 64):
        x = torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images[i:i + 64]]))
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
        z = vae.encode(x).latent_dist.mode()
        out.append((z - vae.config.shift_factor) * vae.config.scaling_factor)
    return torch.cat(out)


def train(args: argparse.Namespace) -> None:
    from safetensors.torch import save_file

    from studio.engine.control_maps import canny
    from tools.train_demo import caption_features, sample_sigmas, tokenize_captions
    from tools.train_demo_lora import load_demo

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = load_demo(Path(args.model))
    tr, te, vae = parts["transformer"], parts["text_encoder"], parts["vae"]
    for m in (tr, te, vae):
        m.requires_grad_(False)
    rng = random.Random(args.seed)
    scenes = rng.sample(shapes.train_scenes(0), args.images)
    t0 = time.perf_counter()
    pictures = [shapes.draw(s, SIDE) for s in scenes]
    lat = encode(vae, pictures)
    ctrl = encode(vae, [canny(p) for p in pictures])
    ctrl = torch.cat([ctrl, torch.zeros(ctrl.shape[0], 33 - ctrl.shape[1], *ctrl.shape[2:])], 1)
    ids, lens = tokenize_captions(parts["tokenizer"], [shapes.caption(s, rng) for s in scenes])
    with torch.no_grad():
        feats = torch.cat([caption_features(te, ids[i:i + 128], lens[i:i + 128]) for i in range(0, len(ids), 128)])
    caps = [feats[i, : int(lens[i])] for i in range(len(scenes))]
    log(f"{len(scenes)} scenes drawn, canny-mapped, encoded and captioned in {time.perf_counter() - t0:.0f} s")

    cn = build(tr)
    params = list(own_parameters(cn).values())
    for p in cn.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    log(f"ControlNet: {sum(p.numel() for p in params)} own parameters")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    budget_s = args.minutes * 60
    losses: list[float] = []
    t0 = time.perf_counter()
    step = 0
    while step < args.max_steps and (elapsed := time.perf_counter() - t0) < budget_s:
        for g in opt.param_groups:  # warm up, then decay linearly over the time budget
            g["lr"] = args.lr * min(1.0, (step + 1) / 20) * max(0.1, 1 - elapsed / budget_s)
        idx = torch.randint(0, len(scenes), (args.batch,), generator=gen)
        x0 = lat[idx]
        noise = torch.randn(x0.shape, generator=gen)
        sig = sample_sigmas(args.batch, gen, torch.device("cpu"))
        xt = ((1 - sig[:, None, None, None]) * x0 + sig[:, None, None, None] * noise).unsqueeze(2)
        xs, t, cap = list(xt.unbind(0)), 1 - sig, [caps[int(i)] for i in idx]
        hints = cn(xs, t, cap, ctrl[idx].unsqueeze(2), conditioning_scale=1.0)
        pred = torch.stack(tr(xs, t, cap, controlnet_block_samples=hints, return_dict=False)[0]).squeeze(2)
        loss = F.mse_loss(pred.float(), x0 - noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 25 == 0:
            log(f"step {step} loss {np.mean(losses[-25:]):.4f} ({(time.perf_counter() - t0) / step:.2f} s/step)")
    sd = {k: v.detach().contiguous() for k, v in cn.state_dict().items() if k.startswith("control")}
    save_file(sd, str(out / "controlnet.safetensors"))
    report = {"args": vars(args), "steps": step, "loss_first25": float(np.mean(losses[:25])),
              "loss_last25": float(np.mean(losses[-25:])), "train_s": round(time.perf_counter() - t0, 1)}
    (out / "train_report.json").write_text(json.dumps(report, indent=2), "utf-8")
    log(f"wrote {out / 'controlnet.safetensors'} after {step} steps")


# --- shipping ----------------------------------------------------------------------------------

CARD = """# Demo ControlNet (canny)

A tiny `ZImageControlNetModel` for the built-in demo model (`assets/demo-model`), trained by
`tools/train_demo_controlnet.py` to put the demo model's shape where a canny map's edges are.

- Layout of Z-Image-Turbo-Fun-Controlnet-Union 2.x: control noise refiner, 33 control input channels
  (the control latents; the 16 + 1 inpaint channels were zero in training).
- Demo scale: width {dim}, hints on transformer blocks {places}, refiner block(s) {refiners};
  {params} own parameters (the embedders and refiners are the transformer's), float16, {size} bytes.

## How it was trained

The demo model frozen; {images} scenes from `tools/demo_shapes.py` at {side}x{side}, the control input
the canny map of each scene (the studio's own canny), the demo model's flow-matching loss, AdamW lr
{lr}, batch {batch}, {steps} steps in {train_s:.0f} s on the CPU (2 cores shared with
other jobs, load average 6 to 13). Control blocks start as copies of the transformer
blocks they feed, output projections at zero. Loss {loss_first:.3f} over the first 25 steps, {loss_last:.3f} over the last 25.

    python tools/train_demo_controlnet.py train --out /tmp/demo-cn
    python tools/train_demo_controlnet.py write --weights /tmp/demo-cn --out assets/demo-controlnet

## Measured effect

{scenes} scenes of held-out (color, background, shape) combos, each large and off-centre, through the
studio's `Engine` on the CPU ({side}x{side}, {m_steps} steps, guidance 0, seed = scene index, scale
{scale}); the score (`edge_match`) is the correlation of the drawn image's gradient magnitude with
the control map's edges, both blurred by {blur:g} px (1: edges exactly where the map has them):

| | edge correlation |
|---|---|
| without the ControlNet | {without:.3f} |
| with the ControlNet | {with_:.3f} |
"""


def write(args: argparse.Namespace) -> None:
    from safetensors.torch import load_file

    from studio.core.atomic import atomic_dir
    from tools.train_demo_lora import load_demo

    src = Path(args.weights)
    report = json.loads((src / "train_report.json").read_text("utf-8"))
    tr = load_demo(Path(args.model))["transformer"]
    cn = build(tr)
    missing = cn.load_state_dict(load_file(str(src / "controlnet.safetensors")), strict=False)
    assert not missing.unexpected_keys and not [k for k in missing.missing_keys if k.startswith("control")]
    # Saved on its own: drop the shared modules so save_pretrained writes only the ControlNet's weights.
    from diffusers import ZImageControlNetModel

    alone = ZImageControlNetModel(**demo_config())
    alone.load_state_dict({k: v for k, v in cn.state_dict().items() if k.startswith("control")}, strict=False)
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        alone.to(torch.float16).save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "zaoxiang.json").write_text(json.dumps({"base_model": "z-image-demo-tiny", "trained": True,
                                                       "kind": "canny", "side": SIDE}, indent=2), "utf-8")
        from studio.engine.generate import Engine

        effect = measure(tmp, Engine(str(args.model), "cpu"), n=args.eval)
        log(f"effect: {effect}")
        (tmp / "effect.json").write_text(json.dumps({"train": report, "effect": effect}, indent=2), "utf-8")
        cfg = demo_config()
        a = report["args"]
        (tmp / "README.md").write_text(CARD.format(
            dim=cfg["dim"], places=cfg["control_layers_places"], refiners=cfg["control_refiner_layers_places"],
            params=sum(v.numel() for k, v in alone.state_dict().items() if k.startswith("control")),
            size=sum(f.stat().st_size for f in tmp.glob("*.safetensors")), images=a["images"], side=SIDE,
            lr=a["lr"], batch=a["batch"], steps=report["steps"], train_s=report["train_s"],
            loss_first=report["loss_first25"], loss_last=report["loss_last25"], scenes=effect["scenes"],
            m_steps=effect["steps"], scale=effect["scale"], blur=EDGE_BLUR_PX, without=effect["edge_corr_without"],
            with_=effect["edge_corr_with"]), "utf-8")
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
    log(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--model", default=str(ROOT / "assets" / "demo-model"))
    t.add_argument("--images", type=int, default=600)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--minutes", type=float, default=14.0)
    t.add_argument("--max-steps", type=int, default=2000)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    w = sub.add_parser("write")
    w.add_argument("--weights", required=True)
    w.add_argument("--out", default=str(ROOT / "assets" / "demo-controlnet"))
    w.add_argument("--model", default=str(ROOT / "assets" / "demo-model"))
    w.add_argument("--eval", type=int, default=8)
    args = ap.parse_args(argv)
    if args.cmd == "train":
        train(args)
    else:
        write(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
