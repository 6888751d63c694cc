"""Print the second pass's variant table from its JSON (no torch import: cheap to run last).

Usage: python3 tools/gpu/second_pass_table.py $OUT/second_pass.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(r: dict) -> None:
    st = r["stages"]
    if "FINAL_fused_cudnn_vae_compiled" in st or "A_first_pass_default" in st and "S_fused_sdpa" not in st:
        return verify_table(r)

    def g(*path, fmt="{:.1f}"):
        cur = st
        for k in path:
            if not isinstance(cur, dict) or k not in cur:
                return "—"
            cur = cur[k]
        return fmt.format(cur) if isinstance(cur, (int, float)) else str(cur)

    print("\n| variant (1024², 9 steps, new prompt each) | per image ms | encode | denoise | decode | step ms |")
    print("|---|---|---|---|---|---|")
    for label, key in (("A first-pass default (native/flash, compiled)", "A_first_pass_default"),
                       ("ALL: fused+cuDNN attn, VAE channels-last (+TE compiled in calls 1-2)", "ALL_new_default"),
                       ("F8: FP8 linears on ALL", "F8_fp8_on_new_default")):
        print(f"| {label} | {g(key, 'images', 'median_ms')} | {g(key, 'images', 'encode_ms')} | "
              f"{g(key, 'images', 'denoise_ms')} | {g(key, 'images', 'decode_ms')} | {g(key, 'step', 'median_ms')} |")
    print(f"| S fused processor, SDPA pick (step only) | | | | | {g('S_fused_sdpa', 'step', 'median_ms')} |")
    print(f"| C fused processor, cuDNN on views (step only) | | | | | {g('C_fused_cudnn', 'step', 'median_ms')} |")
    print(f"\nencode eager {g('A_first_pass_default', 'encode_eager', 'median_ms')} ms -> compiled "
          f"{g('T_text_encoder_compiled', 'encode_compiled', 'median_ms')} ms; decode NCHW "
          f"{g('A_first_pass_default', 'decode_nchw', 'median_ms')} -> channels-last "
          f"{g('V_vae_channels_last', 'decode_channels_last', 'median_ms')} -> +compiled "
          f"{g('VC_vae_compiled', 'decode_compiled_cl', 'median_ms')} ms")
    for k in ("A", "C"):
        key = "A_first_pass_default" if k == "A" else "C_fused_cudnn"
        print(f"profile {k}: {g(key, 'profile', 'wall_ms')} ms wall, kernels {g(key, 'profile', 'kernel_ms')}, "
              f"{g(key, 'profile', 'by_category_ms')}")
    print("micro:", st.get("sdpa_micro"))
    print("skipped:", r["skipped"], "errors:", list(r["errors"]), f"wall {r.get('wall_s')} s")


def verify_table(r: dict) -> None:
    st = r["stages"]
    print("\n| verify call (1024², 9 steps, new prompt each) | per image ms | encode | denoise | decode | step ms |")
    print("|---|---|---|---|---|---|")
    for label, key in (("A first-pass default", "A_first_pass_default"),
                       ("FINAL fused cuDNN attn + compiled VAE", "FINAL_fused_cudnn_vae_compiled"),
                       ("FP8 on FINAL", "F8_fp8_on_final")):
        im, stp = st.get(key, {}).get("images", {}), st.get(key, {}).get("step", {})
        print(f"| {label} | {im.get('median_ms', '—')} | {im.get('encode_ms', '—')} | {im.get('denoise_ms', '—')} | "
              f"{im.get('decode_ms', '—')} | {stp.get('median_ms', '—')} |")
    f = st.get("FINAL_fused_cudnn_vae_compiled", {})
    print("vae compile:", f.get("vae_compile"), "decode", f.get("decode_compiled"), f.get("decode_vs_eager"))
    print("image FINAL vs A:", f.get("image_vs_A"), "FP8 vs bf16:", st.get("F8_fp8_on_final", {}).get("image_vs_bf16"))
    print("encode breakdown:", st.get("ENC_breakdown"))
    print("skipped:", r["skipped"], "errors:", list(r["errors"]), f"wall {r.get('wall_s')} s")


if __name__ == "__main__":
    table(json.loads(Path(sys.argv[1]).read_text("utf-8")))
