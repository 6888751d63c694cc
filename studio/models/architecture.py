"""Z-Image component configurations: the full-size Turbo architecture and the tiny demo one.

The full-size configs mirror Tongyi-MAI/Z-Image-Turbo's published ones, so a pipeline built from
them with random weights is an honest stand-in for speed and memory work when weights can't be had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FLUX_VAE_SCALING = 0.3611
FLUX_VAE_SHIFT = 0.1159


@dataclass(frozen=True)
class Architecture:
    name: str
    transformer: dict[str, Any]
    text_encoder: dict[str, Any]
    vae: dict[str, Any]
    scheduler: dict[str, Any] = field(
        default_factory=lambda: {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}
    )


FULL = Architecture(
    name="z-image-turbo-full",
    transformer=dict(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=3840, n_layers=30,
        n_refiner_layers=2, n_heads=30, n_kv_heads=30, norm_eps=1e-5, qk_norm=True, cap_feat_dim=2560,
        rope_theta=256.0, t_scale=1000.0, axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512],
    ),
    text_encoder=dict(
        vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
    ),
    vae=dict(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
        layers_per_block=2, latent_channels=16, norm_num_groups=32, sample_size=1024,
        scaling_factor=FLUX_VAE_SCALING, shift_factor=FLUX_VAE_SHIFT, use_quant_conv=False,
        use_post_quant_conv=False, force_upcast=True,
    ),
)

# The demo model (trained on flat shapes by tools/train_demo.py, shipped in assets/demo-model).
# Sized so 256x256 in 9 steps stays well under a second on one CPU core: 16x16 image tokens of
# width 128, a 2-layer Qwen3 text encoder of width 128, a 4-level VAE (8x down) with 16 latent
# channels like the real one. The VAE's scaling/shift here are placeholders; training measures them.
TINY = Architecture(
    name="z-image-demo-tiny",
    transformer=dict(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=128, n_layers=4,
        n_refiner_layers=1, n_heads=4, n_kv_heads=4, norm_eps=1e-5, qk_norm=True, cap_feat_dim=128,
        rope_theta=256.0, t_scale=1000.0, axes_dims=[8, 12, 12], axes_lens=[1024, 128, 128],
    ),
    text_encoder=dict(
        vocab_size=0,  # filled in from the tokenizer
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=1024, rms_norm_eps=1e-6,
        rope_theta=10000.0, tie_word_embeddings=True,
    ),
    vae=dict(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(16, 16, 32, 32),
        layers_per_block=1, latent_channels=16, norm_num_groups=8, sample_size=256,
        scaling_factor=FLUX_VAE_SCALING, shift_factor=FLUX_VAE_SHIFT, use_quant_conv=False,
        use_post_quant_conv=False, force_upcast=True,
    ),
)

ARCHITECTURES = {"full": FULL, "tiny": TINY}
