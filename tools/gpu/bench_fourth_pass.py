"""Issue 7, fourth pass: text encoder and denoising steps from CUDA graphs, FP8 kernels; one process per call.

Full-size random-weight Z-Image-Turbo, bf16, 1024², 9 steps, a new prompt every timed image.
Stages, in order (each skipped if the time budget would be crossed):
  mm      matmul micro-benchmark at the blocks' shapes: bf16, FP8 rowwise, FP8 tensorwise
  BASE    second-pass default (fused cuDNN attention, compiled blocks and VAE), eager text encoder
  ENC     where eager encoding goes: new vs already-seen lengths, flash-only SDPA, a profile
  GRAPHS  BASE + the text encoder replayed from CUDA graphs (64-token buckets)
  FP8     GRAPHS + FP8 linears (rowwise kernel)
  FP8T    the same FP8 weights through cuBLAS's per-tensor kernel, scales applied after (fp8.KERNELS)
(Calls 1-2 also had FUSED, q/k/v and w1/w3 as single matmuls, between GRAPHS and FP8: measured no gain,
so it was taken out with its module; see docs/benchmarks.md.) Every stage times the same prompts (embedding cache cleared), so their encode/denoise split compares.
--mode graphs (call 3) measures the denoising steps from CUDA graphs (studio/engine/step_graphs.py):
  NOGRAPH  the defaults without step graphs        STEPG   with them (same process, same prompts)
  FP8T_NOGRAPH / FP8T_GRAPH   the same pair in FP8 mode (per-tensor kernel)
--mode final (calls 4, 5) measures the shipped defaults: DEFAULT (bf16), VAE_OTHER (its compiled decoder in
  the other memory layout), then DEFAULT_FP8 (Engine(fp8=True) on the same weights).
Times: CUDA events around each call after a warm-up, median of >= 5 (bench_second_pass helpers).
Writes <out>/fourth_pass.json; prints a table last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_second_pass as sp  # noqa: E402  (sets the process env before torch starts)
import torch  # noqa: E402
from common import add_common_args, img_diff, sync  # noqa: E402

from studio.engine import fastpath  # noqa: E402
from studio.engine.generate import Engine  # noqa: E402
from studio.engine.random_pipeline import build_random_pipeline  # noqa: E402

R: dict = {"stages": {}, "skipped": [], "errors": {}}
T0 = time.perf_counter()
# (rows, in, out) of the blocks' matmuls at 1024² (4096 image + 64 caption tokens)
MM_SHAPES = {"qkv_one": (4160, 3840, 3840), "qkv_fused": (4160, 3840, 11520), "w1_one": (4160, 3840, 10240),
             "w13_fused": (4160, 3840, 20480), "w2": (4160, 10240, 3840)}


def warm(eng: Engine, size: int, steps: int, all_sizes: bool = False) -> float:
    """Compile and capture for `size` (or the studio's three warm-up sizes), then one untimed image.

    Returns the warm-up's seconds.
    """
    c = eng.warm_up() if all_sizes else eng.warm_up(sizes=((size, size),), batches=(1,))
    eng.generate(prompt="warm-up image", seed=0, width=size, height=size, steps=steps, guidance=0.0)
    return round(c, 2)


def mm_micro(dev) -> dict:
    from studio.engine.fp8 import FP8, quantize_rowwise

    res = {}
    one = torch.ones((), device=dev)
    quant = torch.compile(quantize_rowwise, dynamic=False)  # as inductor runs it inside the blocks
    for name, (m, k, n) in MM_SHAPES.items():
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02
        xq, xs = quantize_rowwise(x)
        wq, ws = quantize_rowwise(w)
        xt, wt = x.to(FP8), w.mul(50).to(FP8)
        variants = {
            "bf16": lambda x=x, w=w: x @ w.t(),
            "fp8_rowwise": lambda xq=xq, wq=wq, xs=xs, ws=ws: torch._scaled_mm(
                xq, wq.t(), scale_a=xs, scale_b=ws.reshape(1, -1).contiguous(), out_dtype=torch.bfloat16),
            "fp8_tensorwise": lambda xt=xt, wt=wt, one=one: torch._scaled_mm(xt, wt.t(), scale_a=one, scale_b=one,
                                                                     out_dtype=torch.bfloat16),
            "quantize_rowwise": lambda x=x: quant(x),
        }
        row = {}
        for v, fn in variants.items():
            try:
                for _ in range(3):
                    fn()
                ts = []
                for _ in range(10):
                    with sp.Timer(dev) as tm:
                        fn()
                    ts.append(tm.ms)
                ms = sp.med(ts)
                row[v] = {"ms": ms} if v.startswith("quantize") else {"ms": ms, "tflops": round(2 * m * k * n / ms / 1e9)}
            except Exception as exc:  # noqa: BLE001
                row[v] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        res[name] = row
    return res


def enc_probe(eng: Engine) -> dict:
    """Eager encode: prompts of new token counts, then other prompts of counts already seen; flash only."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    tok, dev = eng.pipe.tokenizer, eng.device

    def run(prompts):
        out = []
        for p in prompts:
            eng._embeds.clear()
            n = fastpath.prompt_ids(tok, p).shape[1]
            with sp.Timer(dev) as tm:
                eng._encode_eager(p)
            out.append([n, round(tm.ms, 1)])
        return out

    words = "red blue green circle square star ring large small bright soft 红色 蓝色 圆形 方形".split()
    new = [" ".join(words[: 3 + i]) + f" v{i}" for i in range(8)]
    seen = [" ".join(reversed(words[: 3 + i])) + f" w{i}" for i in range(8)]  # same counts, other text
    r = {"new_lengths": run(new), "seen_lengths": run(seen)}
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        r["flash_new_lengths"] = run([p + " 另外的" * 9 for p in new])
    from torch.profiler import ProfilerActivity, profile

    p = "a completely different prompt length for the profiler " * 3
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with sp.Timer(dev) as tm:
            eng._encode_eager(p)
    r["profiled_ms"] = round(tm.ms, 1)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]
    r["top_cpu"] = [[round(e.self_cpu_time_total / 1e3, 2), e.count, e.key[:80]] for e in rows]
    cuda_rows = sorted(prof.key_averages(), key=lambda e: -getattr(e, "self_device_time_total", 0))[:6]
    r["top_cuda"] = [[round(getattr(e, "self_device_time_total", 0) / 1e3, 2), e.count, e.key[:80]]
                     for e in cuda_rows]
    return r


def main() -> int:
    p = argparse.ArgumentParser()
    add_common_args(p)
    p.add_argument("--budget", type=float, default=400.0, help="seconds; later stages are skipped past it")
    p.add_argument("--skip", default="", help="comma-separated stages not to run (e.g. mm,ENC)")
    p.add_argument("--mode", choices=("variants", "graphs", "final"), default="variants")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(a.device)
    S, steps, n = a.size, a.steps, a.runs
    R.update(torch=torch.__version__, device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
             size=S, steps=steps, runs=n)
    state: dict = {}

    def write() -> None:
        R["wall_s"] = round(time.perf_counter() - T0, 1)
        (out / "fourth_pass.json").write_text(json.dumps(R, indent=1, ensure_ascii=False), "utf-8")

    skip = set(filter(None, a.skip.split(",")))
    torch._dynamo.config.recompile_limit = 32  # every stage recompiles the same block forward

    def images() -> dict:
        state["eng"]._embeds.clear()
        return sp.images(state["eng"], n, S, steps, 20)

    def stage(name: str, est_s: float, fn) -> None:
        if name in skip:
            return
        left = a.budget - (time.perf_counter() - T0)
        if est_s > left:
            R["skipped"].append(f"{name} (needs ~{est_s:.0f}s, {left:.0f}s left)")
            sp.log("SKIP", R["skipped"][-1])
            return
        t = time.perf_counter()
        try:
            R["stages"][name] = fn()
            sp.log(name, json.dumps(R["stages"][name], ensure_ascii=False)[:1200])
        except Exception:  # noqa: BLE001
            R["errors"][name] = traceback.format_exc()[-2500:]
            sp.log("ERROR", name, R["errors"][name])
        R.setdefault("stage_s", {})[name] = round(time.perf_counter() - t, 1)
        write()

    if dev.type == "cuda" and a.mode == "variants":
        stage("mm", 5, lambda: mm_micro(dev))
    t = time.perf_counter()
    pipe = build_random_pipeline(a.arch, dev, torch.bfloat16 if dev.type == "cuda" else torch.float32)
    sync(dev)
    R["build_s"] = round(time.perf_counter() - t, 1)
    if a.mode in ("graphs", "final"):
        (graphs_pass if a.mode == "graphs" else final_pass)(a, pipe, dev, stage, state, images, out)
        write()
        table(R)
        return 0

    def s_base():
        eng = Engine("random:" + a.arch, dev, pipe=pipe, compile=True, memory_profile="full", warm="none",
                     compile_cache=Path(a.cache), graph_text_encoder=False)
        state["eng"] = eng
        c = warm(eng, S, steps)
        r = {"compile_s": c, "attention": eng.attention, "images": images(),
             "step": sp.step_ms(pipe, dev, S), "encode_eager": sp.encode_ms(eng, 200)}
        state["img"] = sp.match_image(eng, S, steps)
        state["emb"] = eng.encode(sp.MATCH[0])[0].float()
        return r

    stage("BASE", 120, s_base)
    eng: Engine | None = state.get("eng")
    if eng is None:
        write()
        return 1
    if dev.type == "cuda":
        stage("ENC", 10, lambda: enc_probe(eng))

        def s_graphs():
            from studio.engine.text_graphs import TextGraphs

            eng.text_graphs = TextGraphs(pipe.text_encoder, dev)
            with sp.Timer(dev) as tm:
                eng.text_graphs.capture_all()
            eng._embeds.clear()
            got = eng.encode(sp.MATCH[0])[0].float()
            ref = state["emb"]
            r = {"capture_all_s": round(tm.host_ms / 1e3, 2), "graphs": len(eng.text_graphs.graphs),
                 "encode_graphs": sp.encode_ms(eng, 300),
                 "embeds_rel_err": round(float((got - ref).norm() / ref.norm()), 5),
                 "mem_reserved_gib": round(torch.cuda.memory_reserved(dev) / 1024**3, 2)}
            r["images"] = images()
            state["img_graphs"] = sp.match_image(eng, S, steps)
            r["image_vs_base"] = img_diff(state["img"], state["img_graphs"])
            return r

        stage("GRAPHS", 15, s_graphs)

    if dev.type == "cuda":
        def s_fp8():
            from studio.engine import fp8 as fp8mod

            tr = pipe.transformer
            fastpath.uncompile_blocks(tr)
            k = fp8mod.quantize_transformer(tr)
            fastpath.compile_blocks(tr, eng._switch)
            c = warm(eng, S, steps)
            r = {"linears": k, "compile_s": c, "images": images(),
                 "step": sp.step_ms(pipe, dev, S), "profile": sp.profile_step(pipe, dev, S, "FP8", out)}
            state["img_fp8"] = sp.match_image(eng, S, steps)
            if "img_graphs" in state:
                r["image_vs_bf16"] = img_diff(state["img_graphs"], state["img_fp8"])
            return r

        stage("FP8", 40, s_fp8)

        def s_fp8t():
            from studio.engine import fp8 as fp8mod

            tr = pipe.transformer
            fastpath.uncompile_blocks(tr)
            k = fp8mod.set_kernel(tr, "tensor")
            fastpath.compile_blocks(tr, eng._switch)
            c = warm(eng, S, steps)
            r = {"linears": k, "compile_s": c, "images": images(), "step": sp.step_ms(pipe, dev, S),
                 "profile": sp.profile_step(pipe, dev, S, "FP8T", out)}
            img = sp.match_image(eng, S, steps)
            if "img_graphs" in state:
                r["image_vs_bf16"] = img_diff(state["img_graphs"], img)
            if "img_fp8" in state:
                r["image_vs_fp8_rowwise"] = img_diff(state["img_fp8"], img)
            return r

        stage("FP8T", 40, s_fp8t)
    write()
    table(R)
    return 0


def graphs_pass(a, pipe, dev, stage, state: dict, images, out: Path) -> None:
    """Step graphs off and on, in bf16 and in FP8, in one process on the same prompts."""
    from studio.engine import fp8 as fp8mod
    from studio.engine.step_graphs import StepGraphs

    S, steps = a.size, a.steps

    def s_nograph():
        eng = Engine("random:" + a.arch, dev, pipe=pipe, compile=True, memory_profile="full", warm="none",
                     compile_cache=Path(a.cache), graph_steps=False)
        state["eng"] = eng
        c = warm(eng, S, steps)
        r = {"compile_s": c, "text_graphs": eng.text_graphs is not None,
             "images": images(), "step": sp.step_ms(pipe, dev, S)}
        state["img_nograph"] = sp.match_image(eng, S, steps)
        return r

    def with_graphs(tag: str, ref: str) -> dict:
        eng = state["eng"]
        eng.step_graphs = StepGraphs(pipe.transformer, lambda: eng._switch.ready)
        with sp.Timer(dev) as tm:
            eng._warm_step_graphs(((S, S),), (1,))
        eng.generate(prompt="warm", seed=0, width=S, height=S, steps=steps, guidance=0.0)
        r = {"capture_s": round(tm.host_ms / 1e3, 2), "images": images(), "step": sp.step_ms(pipe, dev, S)}
        if dev.type == "cuda":
            r["profile"] = sp.profile_step(pipe, dev, S, tag, out)
        img = sp.match_image(eng, S, steps)
        r["image_vs_" + ref] = img_diff(state[ref], img)
        sg = eng.step_graphs
        r.update(graphs=sum(s.graph is not None for s in sg.statics.values()) if sg else 0, notes=list(eng.notes),
                 reserved_gib=round(torch.cuda.memory_reserved(dev) / 1024**3, 2) if dev.type == "cuda" else None)
        state["img_" + tag] = img
        return r

    stage("NOGRAPH", 120, s_nograph)
    if "eng" not in state:
        return
    stage("STEPG", 30, lambda: with_graphs("STEPG", "img_nograph"))

    def s_fp8_nograph():
        eng = state["eng"]
        if eng.step_graphs is not None:
            eng.step_graphs.remove()
            eng.step_graphs = None
        tr = pipe.transformer
        fastpath.uncompile_blocks(tr)
        k = fp8mod.quantize_transformer(tr, "tensor")
        fastpath.compile_blocks(tr, eng._switch)
        c = warm(eng, S, steps)
        r = {"linears": k, "compile_s": c, "images": images(), "step": sp.step_ms(pipe, dev, S)}
        state["img_fp8"] = sp.match_image(eng, S, steps)
        r["image_vs_bf16"] = img_diff(state["img_nograph"], state["img_fp8"])
        return r

    if dev.type != "cuda":
        return
    stage("FP8T_NOGRAPH", 45, s_fp8_nograph)
    if "img_fp8" in state:
        stage("FP8T_GRAPH", 30, lambda: with_graphs("FP8T_GRAPH", "img_fp8"))


def final_pass(a, pipe, dev, stage, state: dict, images, out: Path) -> None:
    """The shipped defaults, bf16 then FP8, and the VAE decoder compiled in NCHW vs channels-last."""
    S, steps = a.size, a.steps

    def s_default():
        eng = Engine("random:" + a.arch, dev, pipe=pipe, memory_profile="full", warm="none",
                     compile_cache=Path(a.cache))
        state["eng"] = eng
        c = warm(eng, S, steps, all_sizes=True)  # the studio's warm-up: three sizes, text and step graphs
        r = {"warm_up_s": c, "text_graphs": eng.text_graphs is not None,
             "step_graphs": eng.step_graphs is not None, "compiled_vae": eng.compiled_vae,
             "images": images(), "step": sp.step_ms(pipe, dev, S), "notes": list(eng.notes)}
        state["lat"] = torch.randn(1, 16, S // 8, S // 8, generator=torch.Generator().manual_seed(3)).to(dev)
        r["decode"], state["dec_default"] = sp.decode_ms(eng, state["lat"])
        r["vae_channels_last"] = eng.vae_channels_last
        state["img"] = sp.match_image(eng, S, steps)
        return r

    stage("DEFAULT", 150, s_default)
    eng = state.get("eng")
    if eng is None:
        return

    def s_vae_other():
        """The compiled decoder in the other memory layout than the default's, then back."""
        vae, was_cl = eng.pipe.vae, eng.vae_channels_last
        vae.to(memory_format=torch.contiguous_format if was_cl else torch.channels_last)
        eng.vae_channels_last = not was_cl
        with sp.Timer(dev) as tm:
            eng.decode(state["lat"])  # a new graph for the other strides
        r, img = sp.decode_ms(eng, state["lat"])
        vae.to(memory_format=torch.channels_last if was_cl else torch.contiguous_format)
        eng.vae_channels_last = was_cl
        return {"default_channels_last": was_cl, "first_s": round(tm.host_ms / 1e3, 2), "decode_other": r,
                "vs_default": img_diff(state["dec_default"], img)}

    stage("VAE_OTHER", 60, s_vae_other)
    if dev.type != "cuda":
        return

    def s_fp8():
        for mod in (pipe.transformer, pipe.vae):
            fastpath.uncompile_blocks(mod)
        state.pop("eng")
        eight = Engine("random:" + a.arch, dev, pipe=pipe, memory_profile="full", warm="none", fp8=True,
                       compile_cache=Path(a.cache))
        state["eng"] = eight
        c = warm(eight, S, steps, all_sizes=True)
        r = {"warm_up_s": c, "fp8": eight.fp8, "step_graphs": eight.step_graphs is not None,
             "images": images(), "step": sp.step_ms(pipe, dev, S), "notes": list(eight.notes),
             "reserved_gib": round(torch.cuda.memory_reserved(dev) / 1024**3, 2)}
        r["image_vs_bf16"] = img_diff(state["img"], sp.match_image(eight, S, steps))
        return r

    stage("DEFAULT_FP8", 90, s_fp8)


def table(r: dict) -> None:
    st = r["stages"]
    print("\n| stage | per image ms (min-max) | encode | denoise | decode | step ms |")
    print("|---|---|---|---|---|---|")
    for name in ("BASE", "GRAPHS", "FP8", "FP8T", "NOGRAPH", "STEPG", "FP8T_NOGRAPH", "FP8T_GRAPH",
                 "DEFAULT", "DEFAULT_FP8"):
        im = st.get(name, {}).get("images")
        if not im:
            continue
        step = st[name].get("step", {}).get("median_ms", "—")
        print(f"| {name} | {im['median_ms']:.0f} ({im['min_ms']:.0f}-{im['max_ms']:.0f}) | {im['encode_ms']:.0f} "
              f"| {im['denoise_ms']:.0f} | {im['decode_ms']:.0f} | {step} |")
    for name in ("GRAPHS", "FP8", "FP8T", "STEPG", "FP8T_NOGRAPH", "FP8T_GRAPH", "DEFAULT_FP8"):
        for k, v in st.get(name, {}).items():
            if k.startswith("image_vs") or k == "embeds_rel_err":
                print(f"{name} {k}: {v}")
    if "VAE_OTHER" in st:
        print("decode default", st.get("DEFAULT", {}).get("decode"), "other layout", st["VAE_OTHER"])
    if "mm" in st:
        print(json.dumps(st["mm"]))
    if "ENC" in st:
        e = st["ENC"]
        print("ENC new", e["new_lengths"], "\nENC seen", e["seen_lengths"], "\nENC flash", e["flash_new_lengths"])


if __name__ == "__main__":
    sys.exit(main())
