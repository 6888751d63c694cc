"""A random demo ControlNet: a tiny ZImageControlNetModel for the demo model's architecture.

    python tools/make_demo_controlnet.py --out /tmp/random-demo-controlnet

The shipped `assets/demo-controlnet` is trained from this config (`demo_config`) by
tools/train_demo_controlnet.py; this random one is what it replaced.

It has the layout of the published Z-Image-Turbo-Fun-Controlnet-Union 2.x (control noise refiner,
33 control input channels: the control latents, the inpaint mask and the masked image) scaled to
the demo transformer (width 128, hints on blocks 0 and 2 of 4, refiner 0). Its weights are drawn
from a fixed seed, with the zero-initialised output projections redrawn too, so a control image
visibly changes what the demo model draws: it exists to test the ControlNet path end to end (loading,
sharing the transformer's modules, the same seed and control giving the same pixels), not to follow
edges well. Not installed with the studio (a `tools/` script).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from studio.core.atomic import atomic_dir  # noqa: E402
from studio.models.architecture import TINY  # noqa: E402
from studio.models.controlnets import places_for  # noqa: E402

SEED = 20261128
STD = 0.05  # large enough that the tiny hints move the demo model's output, small enough to stay finite
CONTROL_LAYERS = 2


def demo_config() -> dict:
    tr = TINY.transformer
    return {
        "control_layers_places": places_for(CONTROL_LAYERS, tr["n_layers"]),
        "control_refiner_layers_places": list(range(tr["n_refiner_layers"])),
        "control_in_dim": 33,
        "add_control_noise_refiner": "control_noise_refiner",
        "all_patch_size": list(tr["all_patch_size"]), "all_f_patch_size": list(tr["all_f_patch_size"]),
        "dim": tr["dim"], "n_refiner_layers": tr["n_refiner_layers"], "n_heads": tr["n_heads"],
        "n_kv_heads": tr["n_kv_heads"], "norm_eps": tr["norm_eps"], "qk_norm": tr["qk_norm"],
    }


def build(seed: int = SEED, std: float = STD) -> torch.nn.Module:
    from diffusers import ZImageControlNetModel

    torch.manual_seed(seed)
    model = ZImageControlNetModel(**demo_config())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


CARD = """# Demo ControlNet

A tiny `ZImageControlNetModel` for the built-in demo model (`assets/demo-model`), written by
`tools/make_demo_controlnet.py` (seed {seed}, weights drawn from N(0, {std}), not trained).

- Layout of Z-Image-Turbo-Fun-Controlnet-Union 2.x: control noise refiner, 33 control input channels.
- Demo scale: width {dim}, hints on transformer blocks {places}, refiner block(s) {refiners}.
- {params} parameters, stored in float16 ({size} bytes).

It changes what the demo model draws when a control image is given, and the same seed and control
image give the same pixels; it does not follow edges the way a trained ControlNet does. The tests
use it to exercise the ControlNet path on a CPU.
"""


def write(out: Path) -> Path:
    model = build()
    with atomic_dir(out) as tmp:
        model.to(torch.float16).save_pretrained(str(tmp), safe_serialization=True)
        cfg = demo_config()
        size = sum(f.stat().st_size for f in tmp.glob("*.safetensors"))
        params = sum(p.numel() for p in model.parameters())
        (tmp / "README.md").write_text(CARD.format(seed=SEED, std=STD, dim=cfg["dim"],
                                                   places=cfg["control_layers_places"],
                                                   refiners=cfg["control_refiner_layers_places"],
                                                   params=params, size=size), "utf-8")
        (tmp / "zaoxiang.json").write_text(json.dumps({"base_model": TINY.name, "seed": SEED, "trained": False},
                                                      indent=2), "utf-8")
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    folder = write(args.out)
    print(f"wrote {folder} ({sum(f.stat().st_size for f in folder.iterdir())} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
