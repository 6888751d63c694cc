"""Issue 7, second pass: each remaining fast-path change measured in ONE process on the GPU.

Full-size random-weight Z-Image-Turbo, bf16, 1024², 9 steps, a new prompt every timed image.
Variants, in order (each stage skipped if the time budget would be crossed):
  A   first-pass default: regional compile, diffusers processor, attention "native" (flash)
  S   fused processor (real RoPE fused into q/k norm), torch's SDPA pick       (transformer step only)
  C   fused processor + cuDNN attention on q/k/v views, no copies             (step, profile, images)
  V   VAE decode in channels-last                                              (decode only)
  ALL C + V: whole images (the new default then)
(Calls 1-2 also had T, the text encoder compiled: measured no gain, and the option was later replaced
by the text encoder's CUDA graphs, studio/engine/text_graphs.py; see docs/benchmarks.md.)
  F8  FP8 linears on top of ALL                                                (images)
  VC  VAE decoder compiled, dynamic H/W                                        (decode only)
Times: CUDA events (and host clock) around each call, warm-up first, median of >= 5.
Writes <out>/second_pass.json (and .log via the caller); prints a table last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from studio.engine.cuda_env import prepare_process_env  # noqa: E402

prepare_process_env()

import torch  # noqa: E402

from studio.bench.run import _prompt  # noqa: E402
from studio.engine import fastpath  # noqa: E402
from studio.engine.generate import Engine, initial_noise  # noqa: E402
from studio.engine.random_pipeline import build_random_pipeline  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_args, img_diff, sync  # noqa: E402
from second_pass_table import table  # noqa: E402

R: dict = {"stages": {}, "skipped": [], "errors": {}}
T0 = time.perf_counter()
MATCH = ("a red circle on a blue background 蓝色背景上的红色圆形", 7)


def log(*a) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s]", *a, flush=True)


class Timer:
    """CUDA events around a region (host clock on the CPU); .ms after the region ended."""

    def __init__(self, dev) -> None:
        self.dev = dev

    def __enter__(self):
        sync(self.dev)
        self.t = time.perf_counter()
        if self.dev.type == "cuda":
            self.e0, self.e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.e0.record()
        return self

    def __exit__(self, *exc) -> None:
        if self.dev.type == "cuda":
            self.e1.record()
        sync(self.dev)
        self.host_ms = (time.perf_counter() - self.t) * 1e3
        self.ms = self.e0.elapsed_time(self.e1) if self.dev.type == "cuda" else self.host_ms


def med(xs) -> float:
    return round(statistics.median(xs), 2)


def images(eng: Engine, n: int, size: int, steps: int, start: int) -> dict:
    """n images, a new prompt each: total (events) and the engine's encode/denoise/decode split."""
    dev = eng.device
    tot, host, parts = [], [], []
    for i in range(n):
        with Timer(dev) as t:
            _, tm = eng.generate(prompt=_prompt(start + i), seed=100 + i, width=size, height=size, steps=steps,
                                 guidance=0.0)
        tot.append(t.ms)
        host.append(t.host_ms)
        parts.append(tm)
    return {"median_ms": med(tot), "min_ms": round(min(tot), 1), "max_ms": round(max(tot), 1),
            "all_ms": [round(x, 1) for x in tot], "host_median_ms": med(host),
            "encode_ms": med([p.encode_s * 1e3 for p in parts]),
            "denoise_ms": med([p.denoise_s * 1e3 for p in parts]),
            "decode_ms": med([p.decode_s * 1e3 for p in parts])}


def step_inputs(pipe, dev, size: int):
    tr = pipe.transformer
    lat = initial_noise(1, size, size, tr.config.in_channels, pipe.vae_scale_factor).to(dev, tr.dtype)
    g = torch.Generator().manual_seed(5)
    cap = torch.randn(70, tr.config.cap_feat_dim, generator=g).to(dev, tr.dtype)
    return [lat[0].unsqueeze(1)], torch.full((1,), 0.5, device=dev), [cap]


def step_ms(pipe, dev, size: int, n: int = 6) -> dict:
    """One transformer call (one denoising step) at `size`: median of n after one warm call."""
    x, t, cap = step_inputs(pipe, dev, size)
    out = []
    with torch.no_grad():
        pipe.transformer(x, t, cap, return_dict=False)
        for _ in range(n):
            with Timer(dev) as tm:
                pipe.transformer(x, t, cap, return_dict=False)
            out.append(tm.ms)
    return {"median_ms": med(out), "all_ms": [round(v, 2) for v in out]}


def category(name: str) -> str:
    n = name.lower()
    if any(k in n for k in ("flash", "fmha", "cudnn", "attention", "sdpa")):
        return "attention"
    if any(k in n for k in ("gemm", "nvjet", "xmma", "cutlass", "sm90", "matmul", "scaled_mm")):
        return "matmul"
    if n.startswith("triton"):
        return "triton (fused elementwise/norm)"
    return "other"


def profile_step(pipe, dev, size: int, tag: str, out: Path) -> dict:
    """Kernel time by category over one transformer call, against its wall time (gaps = idle GPU)."""
    from torch.profiler import ProfilerActivity, profile

    x, t, cap = step_inputs(pipe, dev, size)
    with torch.no_grad():
        pipe.transformer(x, t, cap, return_dict=False)
        sync(dev)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            with Timer(dev) as tm:
                pipe.transformer(x, t, cap, return_dict=False)
    cats: dict[str, float] = {}
    rows = []
    for ev in prof.key_averages():
        us = getattr(ev, "self_device_time_total", None)
        if us is None:
            us = getattr(ev, "self_cuda_time_total", 0.0)
        if not us:
            continue
        cats[category(ev.key)] = cats.get(category(ev.key), 0.0) + us / 1e3
        rows.append((us / 1e3, ev.count, ev.key[:110]))
    rows.sort(reverse=True)
    (out / f"profile_{tag}.txt").write_text("\n".join(f"{ms:9.3f} ms  x{c:<5} {k}" for ms, c, k in rows[:40]))
    busy = sum(cats.values())
    return {"wall_ms": round(tm.ms, 2), "kernel_ms": round(busy, 2), "idle_ms": round(tm.ms - busy, 2),
            "by_category_ms": {k: round(v, 2) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
            "top": [[round(ms, 2), c, k] for ms, c, k in rows[:8]]}


def sdpa_micro(dev) -> dict:
    """Attention alone at the 1024² shape (1×30×4160×128): flash, cuDNN contiguous, cuDNN on views."""
    S, H, D = 4160, 30, 128
    flop = 4 * S * S * D * H
    bshd = [torch.randn(1, S, H, D, device=dev, dtype=torch.bfloat16) for _ in range(3)]
    views = [t.transpose(1, 2) for t in bshd]
    contig = [t.contiguous() for t in views]
    cudnn = torch.ops.aten._scaled_dot_product_cudnn_attention
    variants = {
        "sdpa_default_views": lambda: torch.nn.functional.scaled_dot_product_attention(*views),
        "cudnn_contiguous": lambda: cudnn(*contig, None, False)[0],
        "cudnn_views": lambda: cudnn(*views, None, False)[0],
    }
    ref = torch.nn.functional.scaled_dot_product_attention(*[t.float() for t in contig])
    res = {}
    for name, fn in variants.items():
        try:
            out = fn()
            err = float((out.float() - ref).norm() / ref.norm())
            for _ in range(3):
                fn()
            ts = []
            for _ in range(10):
                with Timer(dev) as tm:
                    fn()
                ts.append(tm.ms)
            ms = statistics.median(ts)
            res[name] = {"ms": round(ms, 3), "tflops": round(flop / ms / 1e9, 1), "rel_err": round(err, 5)}
        except Exception as exc:  # noqa: BLE001
            res[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return res


def decode_ms(eng: Engine, lat: torch.Tensor, n: int = 6) -> tuple[dict, object]:
    img = eng.decode(lat)
    ts = []
    for _ in range(n):
        with Timer(eng.device) as tm:
            img = eng.decode(lat)
        ts.append(tm.ms)
    return {"median_ms": med(ts), "all_ms": [round(v, 1) for v in ts]}, img


def encode_ms(eng: Engine, start: int, n: int = 6) -> dict:
    ts = []
    for i in range(n):
        eng._embeds.clear()
        with Timer(eng.device) as tm:
            eng.encode(_prompt(start + i) + f" #{i}")
        ts.append(tm.ms)
    return {"median_ms": med(ts), "all_ms": [round(v, 1) for v in ts]}


def match_image(eng: Engine, size: int, steps: int):
    eng._embeds.clear()
    img, _ = eng.generate(prompt=MATCH[0], seed=MATCH[1], width=size, height=size, steps=steps, guidance=0.0)
    return img


def recompile(eng: Engine, attention: str, size: int) -> float:
    """Blocks back to eager, dynamo reset, new attention, compiled again; returns the compile time."""
    tr = eng.pipe.transformer
    fastpath.uncompile_blocks(tr)
    torch._dynamo.reset()
    eng.attention = fastpath.set_attention_backend(tr, attention)
    fastpath.compile_blocks(tr, eng._switch)
    eng.compiled = True
    t = eng.warm_up(sizes=((size, size),), batches=(1,))
    if not eng.compiled:
        raise RuntimeError(f"compile with {attention} failed: {eng.notes}")
    return round(t, 2)


def verify(a, pipe, dev, out: Path, stage, state: dict) -> None:
    """Second call: the adopted defaults (fused cuDNN attention + compiled NCHW VAE) against A, FP8 on them."""
    S, steps, n = a.size, a.steps, a.runs

    def s_a():
        eng = Engine("random:" + a.arch, dev, pipe=pipe, compile=True, attention="native", memory_profile="full",
                     warm="none", compile_cache=Path(a.cache), compile_vae=False, graph_text_encoder=False)
        state["eng"] = eng
        c = round(eng.warm_up(sizes=((S, S),), batches=(1,)), 2)
        eng.generate(prompt="warm A", seed=0, width=S, height=S, steps=steps, guidance=0.0)
        r = {"compile_s": c, "images": images(eng, n, S, steps, 20), "step": step_ms(pipe, dev, S)}
        state["lat"] = torch.randn(1, 16, S // 8, S // 8, generator=torch.Generator().manual_seed(3)).to(dev)
        r["decode_nchw"], state["dec_nchw"] = decode_ms(eng, state["lat"])
        state["img_A"] = match_image(eng, S, steps)
        return r

    stage("A_first_pass_default", 40, s_a)
    eng = state.get("eng")
    if eng is None:
        return

    def s_final():
        from torch._dynamo.utils import counters

        r = {"blocks_compile_s": recompile(eng, "fused-cudnn", S)}
        assert fastpath.compile_vae_decoder(eng.pipe.vae, eng._extra_switch)
        eng.compiled_vae = True
        sizes = {}
        with fastpath.warming():
            for w, h in ((S, S), (1152, 896), (896, 1152)):
                f = counters["stats"]["unique_graphs"]
                z = torch.randn(1, 16, h // 8, w // 8, device=dev, dtype=eng.pipe.vae.dtype)
                with Timer(dev) as tm:
                    eng.decode(z)
                sizes[f"{w}x{h}"] = {"s": round(tm.host_ms / 1e3, 2),
                                     "graphs": counters["stats"]["unique_graphs"] - f}
        eng._extra_switch.ready = True
        r["vae_compile"] = sizes
        r["decode_compiled"], img = decode_ms(eng, state["lat"])
        r["decode_vs_eager"] = img_diff(state["dec_nchw"], img)
        eng.generate(prompt="warm final", seed=0, width=S, height=S, steps=steps, guidance=0.0)
        r["images"] = images(eng, n, S, steps, 40)
        r["step"] = step_ms(pipe, dev, S)
        state["img_final"] = match_image(eng, S, steps)
        r["image_vs_A"] = img_diff(state["img_A"], state["img_final"])
        return r

    stage("FINAL_fused_cudnn_vae_compiled", 60, s_final)

    def s_enc():
        """Where encode time goes: tokenizer (host) vs text encoder forward (events)."""
        tok, te = eng.pipe.tokenizer, eng.pipe.text_encoder
        host, fwd, ntok = [], [], []
        for i in range(6):
            t = time.perf_counter()
            text = tok.apply_chat_template([{"role": "user", "content": _prompt(500 + i)}], tokenize=False,
                                           add_generation_prompt=True, enable_thinking=True)
            ids = tok([text], return_tensors="pt").input_ids
            host.append((time.perf_counter() - t) * 1e3)
            ntok.append(int(ids.shape[1]))
            with Timer(dev) as tm, torch.no_grad():
                te(input_ids=ids.to(dev), output_hidden_states=True, use_cache=False)
            fwd.append(tm.ms)
        return {"tokenize_ms": [round(x, 1) for x in host], "forward_ms": [round(x, 1) for x in fwd],
                "tokens": ntok}

    stage("ENC_breakdown", 5, s_enc)
    if dev.type == "cuda":
        def s_f8():
            from studio.engine import fp8 as fp8mod

            tr = eng.pipe.transformer
            fastpath.uncompile_blocks(tr)  # no dynamo reset: the compiled VAE stays compiled
            k = fp8mod.quantize_transformer(tr)
            fastpath.compile_blocks(tr, eng._switch)
            c = round(eng.warm_up(sizes=((S, S),), batches=(1,)), 2)
            eng.generate(prompt="warm F8", seed=0, width=S, height=S, steps=steps, guidance=0.0)
            r = {"linears": k, "compile_s": c, "images": images(eng, n, S, steps, 60),
                 "step": step_ms(pipe, dev, S)}
            if "img_final" in state:
                r["image_vs_bf16"] = img_diff(state["img_final"], match_image(eng, S, steps))
            return r

        stage("F8_fp8_on_final", 25, s_f8)


def main() -> int:
    p = argparse.ArgumentParser()
    add_common_args(p)
    p.add_argument("--budget", type=float, default=175.0, help="seconds; later stages are skipped past it")
    p.add_argument("--verify", action="store_true", help="second call: the adopted defaults against A, FP8")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(a.device)
    S, steps, n = a.size, a.steps, a.runs
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    R.update(torch=torch.__version__, device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
             size=S, steps=steps, runs=n)
    state: dict = {}

    def write() -> None:
        R["wall_s"] = round(time.perf_counter() - T0, 1)
        (out / ("second_pass_verify.json" if a.verify else "second_pass.json")).write_text(json.dumps(R, indent=1, ensure_ascii=False), "utf-8")

    def stage(name: str, est_s: float, fn) -> None:
        left = a.budget - (time.perf_counter() - T0)
        if est_s > left:
            R["skipped"].append(f"{name} (needs ~{est_s:.0f}s, {left:.0f}s left)")
            log("SKIP", name, R["skipped"][-1])
            return
        t = time.perf_counter()
        try:
            got = fn()
            R["stages"][name] = got
            log(name, json.dumps(got, ensure_ascii=False)[:900])
        except Exception:  # noqa: BLE001
            R["errors"][name] = traceback.format_exc()[-2500:]
            log("ERROR", name, R["errors"][name])
        R.setdefault("stage_s", {})[name] = round(time.perf_counter() - t, 1)
        write()

    t = time.perf_counter()
    pipe = build_random_pipeline(a.arch, dev, dtype)
    sync(dev)
    R["build_s"] = round(time.perf_counter() - t, 1)
    log("built", R["build_s"])

    if a.verify:
        verify(a, pipe, dev, out, stage, state)
        write()
        return 0
    if dev.type == "cuda":
        stage("sdpa_micro", 3, lambda: sdpa_micro(dev))

    def s_a():
        eng = Engine("random:" + a.arch, dev, pipe=pipe, compile=True, attention="native", memory_profile="full",
                     warm="none", compile_cache=Path(a.cache), vae_channels_last=False,
                     graph_text_encoder=False, compile_vae=False)
        state["eng"] = eng
        c = round(eng.warm_up(sizes=((S, S),), batches=(1,)), 2)
        eng.generate(prompt="warm A", seed=0, width=S, height=S, steps=steps, guidance=0.0)
        r = {"compile_s": c, "images": images(eng, n, S, steps, 20), "step": step_ms(pipe, dev, S)}
        if dev.type == "cuda":
            r["profile"] = profile_step(pipe, dev, S, "A", out)
        r["encode_eager"] = encode_ms(eng, 200)
        state["lat"] = torch.randn(1, 16, S // 8, S // 8, generator=torch.Generator().manual_seed(3)).to(dev)
        r["decode_nchw"], state["dec_nchw"] = decode_ms(eng, state["lat"])
        state["img_A"] = match_image(eng, S, steps)
        r["notes"] = list(eng.notes)
        return r

    stage("A_first_pass_default", 40, s_a)
    if "eng" not in state:
        write()
        return 1
    eng: Engine = state["eng"]

    def s_s():
        return {"compile_s": recompile(eng, "fused-sdpa", S), "step": step_ms(pipe, dev, S)}

    stage("S_fused_sdpa", 22, s_s)

    def s_c():
        try:
            c = recompile(eng, "fused-cudnn", S)
        except Exception:
            recompile(eng, "native", S)  # later stages then measure on the first-pass attention
            raise
        r = {"compile_s": c, "step": step_ms(pipe, dev, S)}
        if dev.type == "cuda":
            r["profile"] = profile_step(pipe, dev, S, "C", out)
        r["image_vs_A"] = img_diff(state["img_A"], match_image(eng, S, steps))
        return r

    stage("C_fused_cudnn", 24, s_c)

    def s_v():
        eng.pipe.vae.to(memory_format=torch.channels_last)
        eng.vae_channels_last = True
        r, img = decode_ms(eng, state["lat"])
        return {"decode_channels_last": r, "vs_nchw": img_diff(state["dec_nchw"], img)}

    stage("V_vae_channels_last", 4, s_v)

    def s_all():
        eng.generate(prompt="warm ALL", seed=0, width=S, height=S, steps=steps, guidance=0.0)
        r = {"attention": eng.attention,
             "vae_channels_last": eng.vae_channels_last, "images": images(eng, n, S, steps, 40)}
        state["img_ALL"] = match_image(eng, S, steps)
        r["image_vs_A"] = img_diff(state["img_A"], state["img_ALL"])
        return r

    stage("ALL_new_default", 9, s_all)

    def s_f8():
        from studio.engine import fp8 as fp8mod

        tr = eng.pipe.transformer
        fastpath.uncompile_blocks(tr)
        torch._dynamo.reset()
        k = fp8mod.quantize_transformer(tr)
        fastpath.compile_blocks(tr, eng._switch)
        c = round(eng.warm_up(sizes=((S, S),), batches=(1,)), 2)
        eng.generate(prompt="warm F8", seed=0, width=S, height=S, steps=steps, guidance=0.0)
        r = {"linears": k, "compile_s": c, "images": images(eng, n, S, steps, 60), "step": step_ms(pipe, dev, S)}
        if "img_ALL" in state:
            r["image_vs_ALL_bf16"] = img_diff(state["img_ALL"], match_image(eng, S, steps))
        return r

    if dev.type == "cuda":
        stage("F8_fp8_on_new_default", 40, s_f8)

    def s_vc():
        assert fastpath.compile_vae_decoder(eng.pipe.vae, eng._switch)
        with Timer(dev) as tm, fastpath.warming():
            eng.decode(state["lat"])
        r, img = decode_ms(eng, state["lat"])
        fastpath.uncompile_blocks(eng.pipe.vae)
        return {"compile_s": round(tm.host_ms / 1e3, 2), "decode_compiled_cl": r,
                "vs_nchw": img_diff(state["dec_nchw"], img)}

    stage("VC_vae_compiled", 45, s_vc)
    write()
    table(R)
    return 0


if __name__ == "__main__":
    sys.exit(main())
