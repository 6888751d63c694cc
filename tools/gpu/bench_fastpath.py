"""GPU fast-path measurements for issue 7, one stage per process (see tools/gpu/run_fastpath.sh).

Stages:
  main     stock vs fast (eager, per attention backend), SDPA micro-benchmark, regional compile
           (first-call time, recompiles across sizes and batch), FP8, fast-vs-stock image match
  restart  a fresh process on the same compile cache: time to the first image beyond load
  profile  one memory profile under a per-process cap (24/16/12 GiB emulation), 1024² single and
           batch, 2048²; run once per allocator config (PYTORCH_CUDA_ALLOC_CONF set by the caller)
  dynfalse compile with dynamic=False: how many recompiles the common sizes cost

Each stage writes <out>/<stage-tag>.json and prints a short summary. Full-size random weights
(bf16) stand in for the real model: the speed and memory of the architecture are what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
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
from studio.engine.generate import Engine  # noqa: E402
from studio.engine.memory import PROFILES, cap_process_memory  # noqa: E402
from studio.engine.random_pipeline import build_random_pipeline  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_args, img_diff, sync  # noqa: E402

GiB = 1024**3
MATCH_PROMPT = "a red circle on a blue background 蓝色背景上的红色圆形"
MATCH_SEED = 7
RESULT: dict = {}


def log(*a) -> None:
    print(*a, flush=True)


def frames_compiled() -> int:
    """Graphs dynamo has produced so far (each one a compile; a recompile adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def time_images(engine: Engine, n: int, size=(1024, 1024), steps=9, start=0) -> dict:
    w, h = size
    out, parts = [], []
    for i in range(n):
        t0 = time.perf_counter()
        _, tm = engine.generate(prompt=_prompt(start + i), seed=100 + i, width=w, height=h, steps=steps,
                                guidance=0.0)
        out.append(time.perf_counter() - t0)
        parts.append(tm)
    return {"median": round(statistics.median(out), 4), "min": round(min(out), 4), "max": round(max(out), 4),
            "all": [round(x, 4) for x in out],
            "encode": round(statistics.median(p.encode_s for p in parts), 4),
            "denoise": round(statistics.median(p.denoise_s for p in parts), 4),
            "decode": round(statistics.median(p.decode_s for p in parts), 4)}


def time_batch(engine: Engine, n: int = 4, size=(1024, 1024), steps=9, prompt_i=50) -> float:
    t0 = time.perf_counter()
    images, _ = engine.generate_batch(prompt=_prompt(prompt_i), seeds=list(range(n)), width=size[0],
                                      height=size[1], steps=steps, guidance=0.0)
    assert len(images) == n
    return round(time.perf_counter() - t0, 3)


def match_image(engine: Engine, size=1024, steps=9):
    engine._embeds.clear()
    img, _ = engine.generate(prompt=MATCH_PROMPT, seed=MATCH_SEED, width=size, height=size, steps=steps,
                             guidance=0.0)
    return img


def peak(dev) -> dict:
    return {"alloc_gib": round(torch.cuda.max_memory_allocated(dev) / GiB, 2),
            "reserved_gib": round(torch.cuda.max_memory_reserved(dev) / GiB, 2)}


def build(dev, arch: str):
    t0 = time.perf_counter()
    pipe = build_random_pipeline(arch, dev, torch.bfloat16 if dev.type == "cuda" else torch.float32)
    sync(dev)
    return pipe, round(time.perf_counter() - t0, 2)


def sdpa_micro(dev, seq=4160, heads=30, dim=128) -> dict:
    """Attention alone at 1024² shapes, per SDPA backend: ms and TFLOP/s (4·S²·D·H per call)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(1, heads, seq, dim, device=dev, dtype=torch.bfloat16) for _ in range(3))
    flop = 4 * seq * seq * dim * heads
    res = {}
    for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                     ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        try:
            with sdpa_kernel(be):
                for _ in range(3):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                sync(dev)
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                for _ in range(20):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                e1.record()
                sync(dev)
            ms = e0.elapsed_time(e1) / 20
            res[name] = {"ms": round(ms, 3), "tflops": round(flop / ms / 1e9, 1)}
        except Exception as exc:  # noqa: BLE001
            res[name] = {"error": str(exc)[:200]}
    return res


def matmul_ceiling(dev) -> float:
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(dev)
    return round(2 * 8192**3 * 10 / (time.perf_counter() - t0) / 1e12, 1)


def stage_main(a) -> None:
    dev = torch.device(a.device)
    cache = Path(a.cache)
    R = RESULT
    R["torch"] = torch.__version__
    if dev.type == "cuda":
        R["gpu"] = torch.cuda.get_device_name(dev)
        R["bf16_matmul_tflops"] = matmul_ceiling(dev)
        R["sdpa_1024"] = sdpa_micro(dev)
        log("sdpa", R["sdpa_1024"])
    pipe, R["build_s"] = build(dev, a.arch)
    log("built", R["build_s"])
    S = a.size
    runs = a.runs

    # 1. literally stock diffusers: pipe(prompt=...) with the padded encoder and default attention
    def stock_call(prompt: str, seed: int):
        gen = torch.Generator("cpu").manual_seed(seed)
        return pipe(prompt=prompt, height=S, width=S, num_inference_steps=a.steps, guidance_scale=0.0,
                    generator=gen, output_type="pil").images[0]

    stock_call("warm-up", 0)
    ts = []
    for i in range(runs):
        sync(dev)
        t0 = time.perf_counter()
        stock_call(_prompt(i), 100 + i)
        sync(dev)
        ts.append(time.perf_counter() - t0)
    R["diffusers_stock_pipe_call"] = {"median": round(statistics.median(ts), 4), "all": [round(x, 4) for x in ts]}
    log("stock pipe()", R["diffusers_stock_pipe_call"])

    # 2. the engine's stock path (fast_path off) — same work, plus our checks
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    eng = Engine("random:" + a.arch, dev, pipe=pipe, fast_path=False, compile=False, memory_profile="full",
                 warm="none")
    stock_img = match_image(eng, S, a.steps)
    R["engine_stock"] = time_images(eng, runs, (S, S), a.steps)
    R["engine_stock_batch4_s"] = time_batch(eng, 4, (S, S), a.steps)
    if dev.type == "cuda":
        R["engine_stock_peak"] = peak(dev)
    log("engine stock", R["engine_stock"], R["engine_stock_batch4_s"], R.get("engine_stock_peak"))

    # 3. fast path eager, per attention backend
    R["eager_fast"] = {}
    best, best_t = None, 1e9
    for be in (fastpath.ATTENTION_BACKENDS if dev.type == "cuda" else ("native",)):
        try:
            eng = Engine("random:" + a.arch, dev, pipe=pipe, fast_path=True, compile=False, attention=be,
                         memory_profile="full", warm="none")
            eng.generate(prompt="warm " + be, seed=0, width=S, height=S, steps=a.steps, guidance=0.0)
            r = time_images(eng, max(2, runs - 2), (S, S), a.steps, start=10)
            R["eager_fast"][be] = r
            if r["median"] < best_t:
                best, best_t = be, r["median"]
            if be == fastpath.DEFAULT_ATTENTION or dev.type != "cuda":
                R["eager_fast_vs_stock_image"] = img_diff(stock_img, match_image(eng, S, a.steps))
        except Exception as exc:  # noqa: BLE001
            R["eager_fast"][be] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        log("eager", be, R["eager_fast"][be])
    R["best_attention_eager"] = best

    # 4. regional compile, sequence dim dynamic; recompiles across sizes and batch
    torch._dynamo.reset()
    f0 = frames_compiled()
    eng = Engine("random:" + a.arch, dev, pipe=pipe, fast_path=dev.type == "cuda", compile=True,
                 attention=best if dev.type == "cuda" else None, memory_profile="full", warm="none",
                 compile_cache=cache)
    comp = {}
    t_all = time.perf_counter()
    for label, sizes, batches in (("1024x1024_b1", ((S, S),), (1,)), ("1152x896_b1", ((1152, 896),), (1,)),
                                  ("896x1152_b1", ((896, 1152),), (1,)), ("1024x1024_b4", ((S, S),), (4,))):
        f = frames_compiled()
        t = eng.warm_up(sizes=sizes, batches=batches)
        comp[label] = {"s": round(t, 2), "frames_compiled": frames_compiled() - f}
        log("compile", label, comp[label], eng.notes)
    comp["total_s"] = round(time.perf_counter() - t_all, 2)
    R["compile"] = comp
    eng.generate(prompt="warm compiled", seed=0, width=S, height=S, steps=a.steps, guidance=0.0)
    f = frames_compiled()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    R["compiled"] = time_images(eng, runs, (S, S), a.steps, start=20)
    R["compiled_other_sizes"] = {f"{w}x{h}": time_images(eng, 1, (w, h), a.steps, start=30)["median"]
                                 for w, h in ((1152, 896), (896, 1152))}
    R["compiled_batch4_s"] = [time_batch(eng, 4, (S, S), a.steps), time_batch(eng, 4, (S, S), a.steps, 51)]
    R["compiled_recompiles_during_runs"] = frames_compiled() - f
    if dev.type == "cuda":
        R["compiled_peak"] = peak(dev)
    fast_img = match_image(eng, S, a.steps)
    R["compiled_vs_stock_image"] = img_diff(stock_img, fast_img)
    R["compiled_frames_total"] = frames_compiled() - f0
    R["notes"] = eng.notes
    log("compiled", R["compiled"], R["compiled_other_sizes"], R["compiled_batch4_s"],
        R["compiled_recompiles_during_runs"], R.get("compiled_peak"), R["compiled_vs_stock_image"])
    R["mega_cache_bytes"] = fastpath.save_mega_cache(eng.compile_cache) if eng.compile_cache else 0
    write(a)

    # 5. FP8 (destroys the bf16 linears: last)
    if dev.type == "cuda" and a.fp8:
        fastpath.uncompile_blocks(pipe.transformer)
        torch._dynamo.reset()
        try:
            eng8 = Engine("random:" + a.arch, dev, pipe=pipe, fast_path=True, compile=True, attention=best,
                          fp8=True, memory_profile="full", warm="none", compile_cache=cache)
            R["fp8_compile_s"] = round(eng8.warm_up(sizes=((S, S),), batches=(1,)), 2)
            eng8.generate(prompt="warm fp8", seed=0, width=S, height=S, steps=a.steps, guidance=0.0)
            torch.cuda.reset_peak_memory_stats(dev)
            R["fp8"] = time_images(eng8, runs, (S, S), a.steps, start=40)
            R["fp8_peak"] = peak(dev)
            R["fp8_vs_bf16_compiled_image"] = img_diff(fast_img, match_image(eng8, S, a.steps))
            R["fp8_notes"] = eng8.notes
            log("fp8", R["fp8"], R["fp8_vs_bf16_compiled_image"], eng8.notes)
        except Exception as exc:  # noqa: BLE001
            R["fp8_error"] = traceback.format_exc()[-1500:]
            log("fp8 failed", exc)


def best_attention(a) -> str | None:
    """The backend the main stage found fastest (so later stages hit the same compile cache)."""
    try:
        return json.loads((Path(a.out) / "main.json").read_text())["best_attention_eager"]
    except Exception:  # noqa: BLE001
        return None


def stage_restart(a) -> None:
    """A new process on the warm cache: load, compile-from-cache, first image."""
    dev = torch.device(a.device)
    t_start = time.perf_counter()
    pipe, RESULT["build_s"] = build(dev, a.arch)
    eng = Engine("random:" + a.arch, dev, pipe=pipe, compile=True, memory_profile="full", warm="none",
                 compile_cache=Path(a.cache), attention=best_attention(a))
    RESULT["warm_up_from_cache_s"] = round(eng.warm_up(sizes=((a.size, a.size),), batches=(1,)), 2)
    t0 = time.perf_counter()
    eng.generate(prompt="first after restart", seed=0, width=a.size, height=a.size, steps=a.steps, guidance=0.0)
    RESULT["first_image_s"] = round(time.perf_counter() - t0, 2)
    RESULT["first_image_beyond_load_s"] = round(RESULT["warm_up_from_cache_s"] + RESULT["first_image_s"], 2)
    RESULT["process_start_to_first_image_s"] = round(time.perf_counter() - t_start, 2)
    RESULT["then"] = time_images(eng, 3, (a.size, a.size), a.steps, start=60)
    RESULT["notes"] = eng.notes
    log("restart", RESULT)


def stage_restart_background(a) -> None:
    """A new process on the warm cache, as the studio starts: warm-up in the background, the first
    images made meanwhile (uncompiled until the compiled blocks switch in)."""
    dev = torch.device(a.device)
    pipe, RESULT["build_s"] = build(dev, a.arch)
    t0 = time.perf_counter()
    eng = Engine("random:" + a.arch, dev, pipe=pipe, compile=True, memory_profile="full", warm="background",
                 compile_cache=Path(a.cache), attention=best_attention(a))
    firsts = []
    for i in range(3):
        t = time.perf_counter()
        eng.generate(prompt=f"first after restart {i}", seed=i, width=a.size, height=a.size, steps=a.steps,
                     guidance=0.0)
        firsts.append(round(time.perf_counter() - t, 2))
    RESULT["first_images_s"] = firsts
    RESULT["first_image_beyond_load_s"] = firsts[0]
    RESULT["warm_done"] = eng.wait_warm(120)
    RESULT["warm_done_after_s"] = round(time.perf_counter() - t0, 2)
    RESULT["then"] = time_images(eng, 3, (a.size, a.size), a.steps, start=60)
    RESULT["notes"] = eng.notes
    log("restart-background", RESULT)


def stage_profile(a) -> None:
    dev = torch.device(a.device)
    prof = PROFILES[a.profile]
    RESULT.update(profile=prof.name, budget_gib=prof.budget_gib,
                  alloc_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF"))
    pipe, RESULT["build_s"] = build(dev, a.arch)
    eng = Engine("random:" + a.arch, dev, pipe=pipe, memory_profile=prof.name, warm="none",
                 compile_cache=Path(a.cache), compile=None if a.compile else False,
                 attention=best_attention(a), fp8=a.engine_fp8)
    RESULT["fp8"] = eng.fp8
    torch.cuda.empty_cache()
    RESULT["resident_after_profile_gib"] = round(torch.cuda.memory_allocated(dev) / GiB, 2)
    RESULT["fraction"] = cap_process_memory(dev, prof.budget_gib)
    torch.cuda.reset_peak_memory_stats(dev)
    RESULT["warm_up_s"] = round(eng.warm_up(sizes=((1024, 1024),), batches=(1, 4)), 2) if eng.compiled else 0.0
    RESULT["compiled"] = eng.compiled

    def attempt(label, fn):
        torch.cuda.reset_peak_memory_stats(dev)
        try:
            RESULT[label] = fn()
        except torch.OutOfMemoryError as exc:
            RESULT[label] = {"oom": str(exc)[:300]}
        except Exception as exc:  # noqa: BLE001
            RESULT[label] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        RESULT[label + "_peak"] = peak(dev)
        log(label, RESULT[label], RESULT[label + "_peak"])
        torch.cuda.empty_cache()

    attempt("warm_image", lambda: time_images(eng, 1, (1024, 1024), a.steps, start=70)["median"])
    attempt("single_1024", lambda: time_images(eng, a.runs, (1024, 1024), a.steps, start=71))
    attempt("batch4_1024_s", lambda: time_batch(eng, 4, (1024, 1024), a.steps, 80))
    if a.big:
        attempt("single_2048", lambda: time_images(eng, 2 if prof.name == "24gb" else 1, (2048, 2048),
                                                   a.steps, start=90))
    RESULT["notes"] = eng.notes


def stage_attn(a) -> None:
    """Compiled path per attention backend (eager timings hide cuDNN's gain behind its q/k/v copies)."""
    dev = torch.device(a.device)
    pipe, RESULT["build_s"] = build(dev, a.arch)
    for be in ("_native_cudnn", "native"):
        fastpath.uncompile_blocks(pipe.transformer)
        torch._dynamo.reset()
        eng = Engine("random:" + a.arch, dev, pipe=pipe, compile=True, attention=be, memory_profile="full",
                     warm="none", compile_cache=Path(a.cache))
        c = round(eng.warm_up(sizes=((1024, 1024),), batches=(1,)), 2)
        eng.generate(prompt="warm " + be, seed=0, width=1024, height=1024, steps=a.steps, guidance=0.0)
        RESULT[be] = {"compile_s": c, **time_images(eng, a.runs, (1024, 1024), a.steps, start=20)}
        RESULT[be + "_other_sizes"] = {f"{w}x{h}": time_images(eng, 1, (w, h), a.steps, start=30)["median"]
                                       for w, h in ((1152, 896), (896, 1152))}
        log("attn", be, RESULT[be], RESULT[be + "_other_sizes"])
        write(a)


def stage_dynfalse(a) -> None:
    """dynamic=False: one graph per shape — count the compiles the common sizes and two prompts cost."""
    dev = torch.device(a.device)
    pipe, RESULT["build_s"] = build(dev, a.arch)
    eng = Engine("random:" + a.arch, dev, pipe=pipe, compile=False, memory_profile="full", warm="none")
    fastpath.use_compile_cache(Path(a.cache))
    switch = fastpath.CompileSwitch()
    switch.ready = True
    fastpath.compile_blocks(pipe.transformer, switch, dynamic="false")
    eng.compiled = True
    seq = []
    for w, h, p in ((1024, 1024, 0), (1024, 1024, 4), (1152, 896, 0), (896, 1152, 0)):
        f = frames_compiled()
        t0 = time.perf_counter()
        eng.generate(prompt=_prompt(p), seed=0, width=w, height=h, steps=2, guidance=0.0)
        seq.append({"size": f"{w}x{h}", "prompt": p, "s": round(time.perf_counter() - t0, 2),
                    "frames_compiled": frames_compiled() - f})
        log("dynfalse", seq[-1])
        RESULT["runs"] = seq


def write(a) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.tag}.json").write_text(json.dumps(RESULT, indent=2, ensure_ascii=False), "utf-8")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("stage", choices=("main", "restart", "restart-bg", "profile", "dynfalse", "attn"))
    add_common_args(p)
    p.add_argument("--tag", default=None)
    p.add_argument("--profile", default="24gb")
    p.add_argument("--no-fp8", dest="fp8", action="store_false")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--no-big", dest="big", action="store_false")
    p.add_argument("--engine-fp8", action="store_true", help="profile stage: the Engine in FP8 mode")
    a = p.parse_args()
    a.tag = a.tag or a.stage
    RESULT["stage"] = a.stage
    RESULT["alloc_conf"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF")
    t0 = time.perf_counter()
    rc = 0
    try:
        {"main": stage_main, "restart": stage_restart, "restart-bg": stage_restart_background,
         "profile": stage_profile, "dynfalse": stage_dynfalse,
         "attn": stage_attn}[a.stage](a)
    except Exception:  # noqa: BLE001
        RESULT["error"] = traceback.format_exc()[-3000:]
        log(RESULT["error"])
        rc = 1
    RESULT["stage_wall_s"] = round(time.perf_counter() - t0, 1)
    write(a)
    log(f"== {a.tag} done in {RESULT['stage_wall_s']} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
