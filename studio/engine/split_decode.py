"""The VAE decode of a split image shared by the group's devices, row by row, with the same pixels.

A split image (studio/engine/split.py) ends on every member with the whole latent, and each member
used to decode all of it: at 2048² that decode is the largest piece of the image no device shares.
Here each member decodes a band of rows and the bands are gathered. The decoder is convolutions,
GroupNorms and one self-attention, so three things cross the bands, and each is exchanged rather
than approximated (tiling would blend tiles and change the picture):
  - a 3×3 convolution needs one row above and below its band: the neighbours' edge rows are gathered
    before each one (zeros at the image's own edges, as the convolution's padding gives);
  - a GroupNorm's mean and variance are over the whole image: the bands' sums are all-reduced, in
    float32, in two passes (mean, then the squared deviations), as the one-device kernel computes them;
  - the mid-block attention attends over every position: its keys and values are gathered.
Nearest upsampling and 1×1 convolutions need nothing. The collectives are functional, so the same
code runs eagerly or compiled, on NCCL or (in tests) gloo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F


def _gather(x: torch.Tensor, dim: int, group: Any) -> torch.Tensor:
    from torch.distributed import _functional_collectives as funcol

    # all_gather_single, its new name, is missing from the torch of the GPU machines
    gather = getattr(funcol, "all_gather_single", None) or funcol.all_gather_tensor
    return gather(x.contiguous(), gather_dim=dim, group=group)


def _all_sum(x: torch.Tensor, group: Any) -> torch.Tensor:
    from torch.distributed import _functional_collectives as funcol

    return funcol.all_reduce(x, "sum", group)


def _halo_conv(conv: torch.nn.Conv2d, rank: int, world: int, group: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """`conv` (3×3, padding 1, stride 1) over a band: the rows above and below come from the neighbours."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        edges = _gather(torch.cat([x[:, :, :1], x[:, :, -1:]], dim=2), 0, group)  # (world·B, C, 2, W)
        edges = edges.unflatten(0, (world, x.shape[0]))
        zero = torch.zeros_like(x[:, :, :1])
        above = edges[rank - 1][:, :, 1:] if rank > 0 else zero
        below = edges[rank + 1][:, :, :1] if rank < world - 1 else zero
        return F.conv2d(torch.cat([above, x, below], dim=2), conv.weight, conv.bias, 1, (0, 1))

    return forward


def _shared_group_norm(norm: torch.nn.GroupNorm, world: int, group: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """`norm` with its statistics over every band: (B, C, *) in, any trailing shape."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        g = x.float().reshape(b, norm.num_groups, -1)
        count = g.shape[-1] * world
        mean = _all_sum(g.sum(-1), group) / count
        centred = g - mean.unsqueeze(-1)
        var = _all_sum(centred.square().sum(-1), group) / count
        y = (centred * torch.rsqrt(var + norm.eps).unsqueeze(-1)).reshape(x.shape)
        if norm.affine:
            shape = (1, c) + (1,) * (x.ndim - 2)
            y = y * norm.weight.float().reshape(shape) + norm.bias.float().reshape(shape)
        return y.to(x.dtype)

    return forward


def _gathered_tokens(linear: torch.nn.Module, group: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """A key or value projection whose output holds every band's tokens (B, tokens, C)."""
    plain = linear.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        return _gather(plain(x), 1, group)

    return forward


def _patches(decoder: torch.nn.Module, rank: int, world: int, group: Any) -> list[tuple[torch.nn.Module, Any]]:
    from diffusers.models.attention_processor import Attention

    out: list[tuple[torch.nn.Module, Any]] = []
    for module in decoder.modules():
        if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3):
            if module.padding != (1, 1) or module.stride != (1, 1) or module.dilation != (1, 1) \
                    or module.padding_mode != "zeros" or module.groups != 1:
                raise ValueError(f"row-split decode takes plain 3×3 convolutions, not {module}")
            out.append((module, _halo_conv(module, rank, world, group)))
        elif isinstance(module, torch.nn.Conv2d) and module.kernel_size != (1, 1):
            raise ValueError(f"row-split decode has no halo for {module}")
        elif isinstance(module, torch.nn.GroupNorm):
            out.append((module, _shared_group_norm(module, world, group)))
        elif isinstance(module, Attention):
            out += [(module.to_k, _gathered_tokens(module.to_k, group)),
                    (module.to_v, _gathered_tokens(module.to_v, group))]
    return out


@contextmanager
def _patched(modules: list[tuple[torch.nn.Module, Any]]) -> Iterator[None]:
    before = [module.__dict__.get("forward") for module, _ in modules]
    for module, forward in modules:
        module.forward = forward
    try:
        yield
    finally:
        for (module, _), old in zip(modules, before):
            if old is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = old


def bands_fit(latent_height: int, world: int, min_rows: int = 4) -> bool:
    """Whether a latent this tall splits into `world` equal bands of at least `min_rows` rows."""
    return world > 1 and latent_height % world == 0 and latent_height // world >= min_rows


def decode_rows(decoder: torch.nn.Module, z: torch.Tensor, group: Any = None, bands: Any = None) -> torch.Tensor:
    """`decoder(z)` (the VAE's Decoder) computed band by band over `group`; every member passes the same
    whole `z` and gets the whole picture back. The latent's height must split evenly. `bands` is a
    `Bands` made once for this decoder and group (a compiled one keeps its graph across images)."""
    import torch.distributed as dist

    group = group or dist.group.WORLD
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if not bands_fit(z.shape[2], world, 1):
        raise ValueError(f"a latent {z.shape[2]} rows tall does not split into {world} equal bands")
    bands = bands or Bands(decoder, rank, world, group)
    rows = z.shape[2] // world
    band = z[:, :, rank * rows:(rank + 1) * rows]
    with _patched(bands.patches):
        if bands.compiled:
            torch._dynamo.maybe_mark_dynamic(band, 2)
            torch._dynamo.maybe_mark_dynamic(band, 3)
        out = bands.forward(band)
    return _gather(out, 2, group)


class Bands:
    """The patched modules of one decoder for one member of one group, and its forward (compiled or
    not): made once, so the patches are the same objects every image and a compiled graph holds."""

    def __init__(self, decoder: torch.nn.Module, rank: int, world: int, group: Any, compiled: bool = False) -> None:
        self.patches = _patches(decoder, rank, world, group)
        self.compiled = compiled
        forward = type(decoder).forward.__get__(decoder)
        if compiled:
            from studio.engine.fastpath import compile_backend

            forward = torch.compile(forward, fullgraph=False, dynamic=None, backend=compile_backend())
        self.forward = forward


class SplitDecode:
    """The VAE's decoder switched to `decode_rows` over the default process group while `active()`;
    images whose latent does not split evenly, and tiled decodes, keep the whole decode. Compiled
    where the Engine compiled the whole decoder (studio/engine/fastpath.py), eager elsewhere."""

    def __init__(self, vae: Any, compiled: bool | None = None) -> None:
        self.vae = vae
        self.compiled = hasattr(vae.decoder, "_zx_eager") if compiled is None else compiled
        self._bands: Bands | None = None

    @contextmanager
    def active(self) -> Iterator[None]:
        import torch.distributed as dist

        decoder, vae = self.vae.decoder, self.vae
        whole = decoder.__dict__.get("forward")  # the compiled switch of fastpath.compile_vae_decoder, or none
        group = dist.group.WORLD
        world = dist.get_world_size(group)
        if self._bands is None:
            self._bands = Bands(decoder, dist.get_rank(group), world, group, self.compiled)
        bands = self._bands

        def forward(z: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if args or kwargs or getattr(vae, "use_tiling", False) or not bands_fit(z.shape[2], world):
                return (whole or type(decoder).forward.__get__(decoder))(z, *args, **kwargs)
            return decode_rows(decoder, z, group, bands)

        decoder.forward = forward
        try:
            yield
        finally:
            if whole is None:
                decoder.__dict__.pop("forward", None)
            else:
                decoder.forward = whole
