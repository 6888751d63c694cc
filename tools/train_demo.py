"""Train the demo model: a small Z-Image pipeline that draws the flat shapes of `demo_shapes.py`.

    python tools/train_demo.py train --out DIR [--device cuda] [--seed 0]   # on a GPU: ~4 min
    python tools/train_demo.py train --out DIR2 --init FOLDER          # continue an assembled model
    python tools/train_demo.py assemble --weights DIR --out assets/demo-model

`train` draws its own images (PIL, from the seed), trains the VAE (an AutoencoderKL) on them, then
the transformer (a ZImageTransformer2DModel) and the Qwen3 text encoder together with the flow-
matching objective that `ZImagePipeline` samples with, and writes one safetensors file per
component plus `train_log.json`. `assemble` turns those into a diffusers folder, loadable by the
same loader as real weights.

The pipeline's sampler, read from diffusers' pipeline_z_image.py: sigmas linspace(1, 1/N, N) shifted
by 3.0 (sigma' = 3s / (1 + 2s)) then 0; the transformer gets t = 1 - sigma; noise_pred = -output;
Euler step x <- x + (sigma_next - sigma) * noise_pred. With x_sigma = (1 - sigma) x0 + sigma * noise,
dx/dsigma = noise - x0, so the transformer is trained to output x0 - noise.

Same seed, same data, same initial weights and the same order of batches; GPU kernels are not
bit-deterministic, so a rerun gives a model of the same quality, not the same bytes.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from studio.core.atomic import atomic_dir  # noqa: E402
from studio.models.architecture import TINY, Architecture  # noqa: E402
from tools import demo_shapes as shapes  # noqa: E402

SIDE = 256
SEQ_MULTI_OF = 32  # ZImageTransformer2DModel pads captions (and images) to a multiple of this
SHIFT = 3.0
TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"  # the tokenizer's chat template


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Data


def _draw_chunk(scenes: list[shapes.Scene]) -> np.ndarray:
    return np.stack([np.asarray(shapes.draw(s, SIDE)) for s in scenes])


def draw_images(scenes: list[shapes.Scene], workers: int) -> torch.Tensor:
    """All scenes as one uint8 tensor (N, 3, H, W), drawn in parallel (order kept)."""
    chunks = [scenes[i:i + 256] for i in range(0, len(scenes), 256)]
    if workers > 1:
        with get_context("fork").Pool(workers) as pool:
            arrays = pool.map(_draw_chunk, chunks)
    else:
        arrays = [_draw_chunk(c) for c in chunks]
    return torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()


def tokenize_captions(tokenizer: Any, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (padded right) and lengths, exactly as the pipeline's chat template makes them."""
    enc = tokenizer([TEMPLATE.format(t) for t in texts], padding=True, return_tensors="pt")
    return enc.input_ids, enc.attention_mask.sum(1)


# ---------------------------------------------------------------------------------------------
# Components


def make_components(arch: Architecture, vocab: int, seed: int) -> dict[str, Any]:
    """Untrained transformer, text encoder and VAE of `arch`, initialised from `seed`."""
    from diffusers import AutoencoderKL, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(**arch.transformer)
    with torch.no_grad():  # the library leaves most weights at PyTorch defaults; DiT-style N(0, 0.02)
        for name, p in transformer.named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                p.normal_(0.0, 0.02)
    te_cfg = dict(arch.text_encoder, vocab_size=vocab)
    text_encoder = Qwen3Model(Qwen3Config(**te_cfg))
    vae = AutoencoderKL(**arch.vae)
    return {"transformer": transformer, "text_encoder": text_encoder, "vae": vae}


def load_init(parts: dict[str, Any], folder: Path) -> dict[str, float]:
    """Load an assembled demo model's weights into `parts`; returns its VAE's shift and scale, which
    training keeps (the transformer's latents are only meaningful under the same VAE)."""
    from safetensors.torch import load_file

    for name, module in parts.items():
        files = sorted((folder / name).glob("*.safetensors"))
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
        module.load_state_dict(state, strict=True)
    cfg = json.loads((folder / "vae" / "config.json").read_text())
    return {"shift_factor": cfg["shift_factor"], "scaling_factor": cfg["scaling_factor"]}


def caption_features(text_encoder: Any, ids: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """The pipeline's prompt embedding (second-to-last hidden state), batched. With causal attention
    the states of real tokens do not depend on right padding, so this equals the pipeline's 512-pad."""
    mask = torch.arange(ids.shape[1], device=ids.device)[None] < lens[:, None]
    # use_cache=False: a KV cache would hold the graph in reference cycles that only a full gc frees.
    out = text_encoder(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True, use_cache=False)
    return out.hidden_states[-2]


def dit_forward(model: Any, lat: torch.Tensor, t: torch.Tensor, cap: torch.Tensor, lens: torch.Tensor,
                lens_cpu: torch.Tensor | None = None) -> torch.Tensor:
    """ZImageTransformer2DModel.forward for a batch of same-size images, without its per-sample loops.

    Same modules, same positions and masks as the library's forward (checked by `check_forward`):
    captions padded to a multiple of 32 with `cap_pad_token`, caption positions (k+1, 0, 0), image
    positions (P+1, h, w) after a caption padded to P, sequence [image, caption], batch padding masked.
    """
    b, c, h, w = lat.shape
    ht, wt = h // 2, w // 2
    n_img = ht * wt
    dev = lat.device
    adaln = model.t_embedder(t * model.t_scale).type_as(lat)

    x = lat.view(b, c, ht, 2, wt, 2).permute(0, 2, 4, 3, 5, 1).reshape(b, n_img, 4 * c)
    x = model.all_x_embedder["2-1"](x)
    padded = ((lens + SEQ_MULTI_OF - 1) // SEQ_MULTI_OF) * SEQ_MULTI_OF
    # Shapes come from the CPU copy of the lengths when given: no device sync in the training loop.
    host = padded if lens_cpu is None else ((lens_cpu + SEQ_MULTI_OF - 1) // SEQ_MULTI_OF) * SEQ_MULTI_OF
    p_max = int(host.max())
    hh, ww = torch.meshgrid(torch.arange(ht, device=dev), torch.arange(wt, device=dev), indexing="ij")
    img_ids = torch.stack([
        (padded + 1)[:, None].expand(b, n_img), hh.reshape(1, -1).expand(b, n_img), ww.reshape(1, -1).expand(b, n_img)
    ], -1)
    x_freqs = model.rope_embedder(img_ids.reshape(-1, 3)).view(b, n_img, -1)
    for layer in model.noise_refiner:
        x = layer(x, None, x_freqs, adaln)

    if cap.shape[1] < p_max:
        cap = F.pad(cap, (0, 0, 0, p_max - cap.shape[1]))
    cap = model.cap_embedder(cap[:, :p_max])
    k = torch.arange(p_max, device=dev)[None].expand(b, p_max)
    cap = torch.where((k >= lens[:, None])[..., None], model.cap_pad_token.to(cap.dtype), cap)
    zeros = torch.zeros_like(k)
    cap_freqs = model.rope_embedder(torch.stack([k + 1, zeros, zeros], -1).reshape(-1, 3)).view(b, p_max, -1)
    uniform = bool((host == p_max).all())
    cap_mask = None if uniform else (k < padded[:, None])
    for layer in model.context_refiner:
        cap = layer(cap, cap_mask, cap_freqs)

    unified = torch.cat([x, cap], 1)
    freqs = torch.cat([x_freqs, cap_freqs], 1)
    mask = None if uniform else torch.cat([torch.ones(b, n_img, dtype=torch.bool, device=dev), cap_mask], 1)
    for layer in model.layers:
        unified = layer(unified, mask, freqs, adaln)
    out = model.all_final_layer["2-1"](unified, c=adaln)[:, :n_img]
    return out.reshape(b, ht, wt, 2, 2, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


def check_forward(model: Any, device: torch.device) -> float:
    """Largest difference between `dit_forward` and the library forward on mixed caption lengths."""
    g = torch.Generator().manual_seed(1)
    lens = torch.tensor([20, 31, 40, 5])
    lat = torch.randn(4, model.in_channels, 32, 32, generator=g).to(device)
    t = torch.rand(4, generator=g).to(device)
    cap = torch.randn(4, 40, model.config.cap_feat_dim, generator=g).to(device)
    with torch.no_grad():
        ours = dit_forward(model, lat, t, cap, lens.to(device))
        ref = model([lat[i].unsqueeze(1) for i in range(4)], t, [cap[i, : lens[i]] for i in range(4)],
                    return_dict=False)[0]
        ref = torch.stack([r.squeeze(1) for r in ref])
    return float((ours - ref).abs().max() / ref.abs().max())


def dit_loss(transformer: Any, te: Any, xt: torch.Tensor, sig: torch.Tensor, ids: torch.Tensor, lens: torch.Tensor,
             lens_cpu: torch.Tensor, target: torch.Tensor, amp: bool) -> torch.Tensor:
    """The flow-matching loss of one batch: caption features, then the transformer at t = 1 - sigma."""
    with torch.autocast(xt.device.type, dtype=torch.bfloat16, enabled=amp):
        cap = caption_features(te, ids, lens)
        pred = dit_forward(transformer, xt, 1 - sig, cap, lens, lens_cpu)
    return F.mse_loss(pred.float(), target)


def inference_sigmas(steps: int) -> list[float]:
    s = np.linspace(1.0, 1.0 / steps, steps)
    return [float(SHIFT * v / (1 + (SHIFT - 1) * v)) for v in s] + [0.0]


def sample_sigmas(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Half from the shifted-uniform training distribution, half near the 9-step sampler's sigmas."""
    u = torch.rand(n, generator=gen, device=device)
    shifted = SHIFT * u / (1 + (SHIFT - 1) * u)
    grid = torch.tensor(inference_sigmas(9)[:-1], device=device)
    near = grid[torch.randint(0, 9, (n,), generator=gen, device=device)]
    near = near + 0.02 * torch.randn(n, generator=gen, device=device)
    pick = torch.rand(n, generator=gen, device=device) < 0.5
    return torch.where(pick, shifted, near).clamp(0.001, 1.0)


@torch.no_grad()
def sample(model: Any, te: Any, vae: Any, ids: torch.Tensor, lens: torch.Tensor, seeds: list[int],
           steps: int = 9) -> torch.Tensor:
    """The pipeline's sampler, batched: images in [-1, 1]. Noise as the Engine draws it (CPU, seed)."""
    dev = ids.device
    noise = torch.stack([torch.randn((16, 32, 32), generator=torch.Generator().manual_seed(s)) for s in seeds])
    x = noise.to(dev)
    cap = caption_features(te, ids, lens)
    sig = inference_sigmas(steps)
    for i in range(steps):
        t = torch.full((len(seeds),), 1.0 - sig[i], device=dev)
        out = dit_forward(model, x, t, cap, lens).float()
        x = x + (sig[i + 1] - sig[i]) * (-out)
    lat = x / vae.config.scaling_factor + vae.config.shift_factor
    return vae.decode(lat).sample.clamp(-1, 1)


def heldout_score(transformer: Any, te: Any, vae: Any, tokenizer: Any, prompts: list, device: torch.device,
                  workers: int) -> tuple[float, float, np.ndarray]:
    """Share of held-out prompts read right, English and Chinese, with the batched sampler."""
    transformer.eval()
    te.eval()
    ids, lens = tokenize_captions(tokenizer, [p for p, _, _ in prompts])
    imgs = to_uint8(torch.cat([
        sample(transformer, te, vae, ids[i:i + 128].to(device), lens[i:i + 128].to(device),
               list(range(i, min(i + 128, len(prompts)))))
        for i in range(0, len(prompts), 128)
    ]))
    ok = score(imgs, [s for _, _, s in prompts], workers)
    rates = []
    for lang in ("en", "zh"):
        sel = [o for o, (_, lg, _) in zip(ok, prompts) if lg == lang]
        rates.append(sum(sel) / max(1, len(sel)))
    return rates[0], rates[1], imgs


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _read(arr: np.ndarray) -> tuple:
    r = shapes.read_image(arr)
    return r.fg, r.bg, r.shape


def score(images: np.ndarray, expected: list[shapes.Scene], workers: int) -> list[bool]:
    if workers > 1:
        with get_context("fork").Pool(workers) as pool:
            reads = pool.map(_read, list(images))
    else:
        reads = [_read(a) for a in images]
    return [r == (e.fg, e.bg, e.shape) for r, e in zip(reads, expected)]


# ---------------------------------------------------------------------------------------------
# Training


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def train_vae(vae: Any, images: torch.Tensor, steps: int, batch: int, lr: float, gen: torch.Generator,
              device: torch.device, amp: bool, budget_s: float = 0.0) -> list[float]:
    """Reconstruction (L1 + MSE) with a light KL pull on the posterior, so latents stay near unit scale."""
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    t0 = time.perf_counter()
    step = 0
    while step < steps:
        if budget_s and step in (50, 100):  # speed from steps 50-100, after kernel warm-up
            _sync(device)
            if step == 50:
                t50 = time.perf_counter()
            else:
                per = (time.perf_counter() - t50) / 50
                steps = min(steps, max(step, step + int((budget_s - (time.perf_counter() - t0)) / per)))
                log(f"vae: {per * 1000:.1f} ms/step -> {steps} steps fit the budget")
        for group in opt.param_groups:
            group["lr"] = lr * cosine_lr(step, steps, 100)
        idx = torch.randint(0, len(images), (batch,), generator=gen, device=device)
        x = images[idx.to(images.device)].to(device).float() / 127.5 - 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen, device=device)
            rec = vae.decode(z).sample.float()
        kl = 0.5 * (post.mean.float() ** 2 + post.var.float() - 1 - post.logvar.float()).mean()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(loss.detach().clone())  # clone: the 0-dim loss views a batch-sized buffer
        step += 1
        if step % 200 == 0 or step == steps:
            log(f"vae step {step}/{steps} loss {float(torch.stack(losses[-50:]).mean()):.4f}")
    vae.eval()
    return [float(v) for v in torch.stack(losses).cpu()]


@torch.no_grad()
def encode_latents(vae: Any, images: torch.Tensor, device: torch.device, amp: bool) -> torch.Tensor:
    out = []
    for i in range(0, len(images), 256):
        x = images[i:i + 256].to(device).float() / 127.5 - 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(vae.encode(x).latent_dist.mean.float())
    return torch.cat(out)


class Ema:
    """Exponential moving average of weights; the EMA copy is what ships."""

    def __init__(self, modules: list[torch.nn.Module], decay: float) -> None:
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone().float() for p in self.params]
        self.decay = decay
        self.n = 0

    @torch.no_grad()
    def update(self) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1 - d)

    @torch.no_grad()
    def copy_to(self) -> None:
        for p, s in zip(self.params, self.shadow):
            p.copy_(s.to(p.dtype))

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The EMA weights in place for a while (an evaluation, a checkpoint), then the live ones back."""
        live = [p.detach().clone() for p in self.params]
        self.copy_to()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.params, live):
                    p.copy_(v)


def save_weights(out: Path, modules: dict[str, torch.nn.Module], report: dict[str, Any]) -> None:
    """One safetensors file per component plus `train_log.json`: what `assemble` reads."""
    from safetensors.torch import save_file

    for name, module in modules.items():
        state = {k: v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(out / f"{name}.safetensors"))
    (out / "train_log.json").write_text(json.dumps(report, indent=2))


def memory_note(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.memory_allocated(device) / 2**30:.1f} GiB allocated"
    return ""


def train(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    t_start = time.perf_counter()
    device = torch.device(args.device)
    amp = device.type == "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    report: dict[str, Any] = {"seed": args.seed, "args": vars(args), "device": str(device)}
    if amp:
        report["gpu"] = torch.cuda.get_device_name(device)

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    probe = "a red star on a white background"
    assert tokenizer.apply_chat_template([{"role": "user", "content": probe}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=True) == TEMPLATE.format(probe)

    # Data: every trained combo at every position and size; several captions per image.
    scenes = shapes.train_scenes(args.seed)
    if args.limit:
        scenes = random.Random(args.seed).sample(scenes, args.limit)
    t0 = time.perf_counter()
    images = draw_images(scenes, args.workers)
    report["images"] = len(images)
    report["draw_s"] = round(time.perf_counter() - t0, 1)
    log(f"drew {len(images)} images in {report['draw_s']} s")
    rng = random.Random(args.seed)
    texts = [shapes.caption(s, rng) for s in scenes for _ in range(args.captions)]
    texts[:: 20] = [""] * len(texts[:: 20])  # 5% empty captions: the unconditional branch CFG needs
    cap_ids, cap_lens = tokenize_captions(tokenizer, texts)
    cap_ids = cap_ids.view(len(scenes), args.captions, -1).to(device)
    cap_lens_cpu = cap_lens.view(len(scenes), args.captions)
    cap_lens = cap_lens_cpu.to(device)
    report["caption_tokens_max"] = int(cap_lens.max())
    images = images.to(device) if amp else images

    parts = make_components(TINY, len(tokenizer), args.seed)
    init_vae = load_init(parts, Path(args.init)) if args.init else None
    if init_vae is not None:
        before = json.loads((Path(args.init) / "zaoxiang.json").read_text())
        report.update(init=str(args.init), init_dit_steps=before.get("dit_steps", 0),
                      init_vae_steps=before.get("vae_steps", 0))
        log(f"continuing from {args.init}")
    vae, transformer, te = (parts[k].to(device) for k in ("vae", "transformer", "text_encoder"))
    err = check_forward(transformer, device)
    log(f"batched forward vs library forward: max rel diff {err:.2e}")
    assert err < 1e-4, "dit_forward drifted from ZImageTransformer2DModel.forward"
    if amp:  # after the exactness check, which wants plain float32
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # 1. VAE: trained here, or taken over (with its latent shift/scale) from --init
    t0 = time.perf_counter()
    if init_vae is None:
        dgen_vae = torch.Generator(device=device).manual_seed(args.seed)
        vae_losses = train_vae(vae, images, args.vae_steps, args.vae_batch, args.vae_lr, dgen_vae, device, amp,
                               args.vae_budget_s)
        report.update(vae_loss=float(np.mean(vae_losses[-50:])), vae_steps=len(vae_losses))
        lat = encode_latents(vae, images, device, amp)
        shift, std = float(lat.mean()), float(lat.std())
    else:
        vae.eval()
        report["vae_steps"] = 0
        lat = encode_latents(vae, images, device, amp)
        shift, std = init_vae["shift_factor"], 1.0 / init_vae["scaling_factor"]
    vae.register_to_config(shift_factor=shift, scaling_factor=1.0 / std)
    lat = ((lat - shift) / std).contiguous()
    with torch.no_grad():
        rec = vae.decode(lat[:64] * std + shift).sample.clamp(-1, 1)
    recon_ok = score(to_uint8(rec), scenes[:64], args.workers)
    from PIL import Image

    pair = np.concatenate([to_uint8(images[:8].float() / 127.5 - 1), to_uint8(rec[:8])], 1)  # originals over recons
    Image.fromarray(np.concatenate(list(pair), 1)).save(out / "vae_recon.png")
    report.update(vae_s=round(time.perf_counter() - t0, 1), vae_shift=shift, vae_scale=1.0 / std,
                  vae_recon_checker=sum(recon_ok) / len(recon_ok))
    log(f"vae done in {report['vae_s']} s; latent mean {shift:.3f} std {std:.3f}; "
        f"checker on reconstructions {report['vae_recon_checker']:.2%}")
    dgen = torch.Generator(device=device).manual_seed(args.seed + 1)  # the transformer's training draws

    # 2. Transformer + text encoder
    report["vae_config"] = {"scaling_factor": 1.0 / std, "shift_factor": shift}
    modules = {"transformer": transformer, "text_encoder": te, "vae": vae}
    params = list(transformer.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99), fused=amp)
    ema = Ema([transformer, te], args.ema)
    transformer.train()
    te.train()
    prompts = shapes.eval_prompts(args.seed)
    if args.eval_limit:
        prompts = prompts[: args.eval_limit]
    curve: list[dict[str, float]] = []
    t0 = time.perf_counter()
    total = args.dit_steps
    losses: list[float] = []
    step = 0
    while step < total:
        for group in opt.param_groups:
            group["lr"] = args.lr * cosine_lr(step, total, 200)
        # Which images and captions: drawn on the CPU, so caption lengths are known without a sync.
        idx = torch.randint(0, len(scenes), (args.batch,), generator=gen)
        k = torch.randint(0, args.captions, (args.batch,), generator=gen)
        lens_cpu = cap_lens_cpu[idx, k]
        pick = torch.stack([idx, k]).pin_memory().to(device, non_blocking=True) if amp else torch.stack([idx, k])
        sig = sample_sigmas(args.batch, dgen, device)
        noise = torch.randn((args.batch, *lat.shape[1:]), generator=dgen, device=device)
        ids, lens = cap_ids[pick[0], pick[1]], cap_lens[pick[0], pick[1]]
        ids = ids[:, : int(lens_cpu.max())]
        x0 = lat[pick[0]]
        xt = (1 - sig)[:, None, None, None] * x0 + sig[:, None, None, None] * noise
        opt.zero_grad(set_to_none=True)
        try:
            loss = dit_loss(transformer, te, xt, sig, ids, lens, lens_cpu, x0 - noise, amp)
            loss.backward()
        except torch.OutOfMemoryError as exc:  # keep what was learnt rather than lose the run
            log(f"out of memory at step {step} ({memory_note(device)}): stopping early; {str(exc)[:200]}")
            report["stopped_early"] = f"out of memory at step {step}"
            del exc
            opt.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
            break
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update()
        losses.append(loss.detach().clone())  # clone: the 0-dim loss views a batch-sized buffer
        step += 1
        if args.budget_s and step in (100, 200):
            # Fit the time budget once, from the speed after warm-up; the log records the steps run.
            _sync(device)
            if step == 100:
                t100 = time.perf_counter()
            else:
                per = (time.perf_counter() - t100) / 100
                left = args.budget_s - (time.perf_counter() - t0)
                n = int(left / per)
                if args.eval_every:  # leave time for the learning-curve evaluations (about 3 s each)
                    n = int((left - 3.0 * (step + n) / args.eval_every) / per)
                total = min(total, max(step, step + n))
                log(f"{per * 1000:.1f} ms/step -> {total} steps")
        if step % 250 == 0 or step == total:
            gc.collect()  # belt and braces against reference cycles holding device memory
            log(f"dit step {step}/{total} loss {float(torch.stack(losses[-100:]).mean()):.4f} {memory_note(device)}")
        if args.eval_every and step % args.eval_every == 0 and step < total:
            te_ = time.perf_counter()  # the learning curve, on the EMA weights (what ships)
            with ema.swapped():
                en, zh, _ = heldout_score(transformer, te, vae, tokenizer, prompts, device, args.workers)
                curve.append({"step": step, "seconds": round(time.perf_counter() - t0, 1), "en": en, "zh": zh})
                save_weights(out, modules, {**report, "dit_steps": step, "curve": curve, "checkpoint": True})
            transformer.train()
            te.train()
            log(f"held-out at step {step} (EMA): en {en:.1%} zh {zh:.1%}; checkpoint saved "
                f"({time.perf_counter() - te_:.1f} s)")
    _sync(device)
    report.update(dit_steps=step, dit_s=round(time.perf_counter() - t0, 1),
                  dit_loss=float(torch.stack(losses[-200:]).mean()), curve=curve)
    ema.copy_to()

    # 3. Quick score on the held-out prompts with the batched sampler (the CPU eval uses the Engine).
    en, zh, imgs = heldout_score(transformer, te, vae, tokenizer, prompts, device, args.workers)
    report.update(heldout_en_gpu_sampler=en, heldout_zh_gpu_sampler=zh)
    log(f"held-out (batched sampler, EMA weights): en {en:.1%} zh {zh:.1%}")
    grid = np.concatenate([imgs, np.zeros((max(0, 64 - len(imgs)), SIDE, SIDE, 3), np.uint8)])[:64]
    grid = grid.reshape(8, 8, SIDE, SIDE, 3).transpose(0, 2, 1, 3, 4).reshape(8 * SIDE, 8 * SIDE, 3)
    from PIL import Image

    Image.fromarray(grid).resize((1024, 1024)).save(out / "heldout_samples.png")

    report["total_s"] = round(time.perf_counter() - t_start, 1)
    save_weights(out, modules, report)
    log(f"saved to {out} in {report['total_s']} s total")
    return report


# ---------------------------------------------------------------------------------------------
# Assembling the diffusers folder


def assemble(weights: Path, tokenizer_dir: Path, target: Path, note: dict[str, Any]) -> Path:
    """A diffusers-format ZImagePipeline folder from `train`'s safetensors files and the tokenizer."""
    import shutil

    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    parts = make_components(TINY, len(tokenizer), 0)
    for name, module in parts.items():
        module.load_state_dict(load_file(str(weights / f"{name}.safetensors")), strict=True)
        module.eval()
    vae_cfg = json.loads((weights / "train_log.json").read_text())["vae_config"]
    parts["vae"].register_to_config(**vae_cfg)
    pipe = ZImagePipeline(tokenizer=tokenizer, scheduler=FlowMatchEulerDiscreteScheduler(**TINY.scheduler), **parts)
    target = Path(target)
    with atomic_dir(target) as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "zaoxiang.json").write_text(json.dumps({"architecture": TINY.name, **note}, indent=2) + "\n", "utf-8")
        for keep in ("MODEL_CARD.md", "train_log.json", "train.log"):
            if (target / keep).exists():
                shutil.copy2(target / keep, tmp / keep)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="train_demo", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on drawn shapes and write per-component safetensors")
    t.add_argument("--out", required=True)
    t.add_argument("--tokenizer", default="assets/demo-model/tokenizer")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    t.add_argument("--limit", type=int, default=0, help="use only this many training images (smoke tests)")
    t.add_argument("--captions", type=int, default=8, help="captions drawn per image")
    t.add_argument("--vae-steps", type=int, default=1500)
    t.add_argument("--vae-batch", type=int, default=32)
    t.add_argument("--vae-lr", type=float, default=1e-3)
    t.add_argument("--dit-steps", type=int, default=6000)
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--ema", type=float, default=0.999)
    t.add_argument("--eval-limit", type=int, default=0, help="score only this many held-out prompts")
    t.add_argument("--eval-every", type=int, default=0, help="score the held-out prompts every N steps")
    t.add_argument("--init", help="continue from this assembled model folder (its VAE is kept)")
    t.add_argument("--vae-budget-s", type=float, default=0.0, help="cap VAE steps to fit this many seconds")
    t.add_argument("--budget-s", type=float, default=0.0, help="cap transformer steps to fit this many seconds")
    a = sub.add_parser("assemble", help="build the diffusers folder from trained weights")
    a.add_argument("--weights", required=True)
    a.add_argument("--tokenizer", default="assets/demo-model/tokenizer")
    a.add_argument("--out", default="assets/demo-model")
    a.add_argument("--version", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "train":
        train(args)
    else:
        log_data = json.loads((Path(args.weights) / "train_log.json").read_text())
        note = {"demo": True, "trained": True, "version": args.version, "seed": log_data["seed"],
                "dit_steps": log_data["dit_steps"] + log_data.get("init_dit_steps", 0),
                "vae_steps": log_data["vae_steps"] or log_data.get("init_vae_steps", 0)}
        assemble(Path(args.weights), Path(args.tokenizer), Path(args.out), note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
