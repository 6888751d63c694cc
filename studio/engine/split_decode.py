"""The VAE decode of a split image shared by the group's devices, row by row, with the same pixels.

A split image (studio/engine/split.py) ends on every member with the whole latent, and each member
used to decode all of it: at 2048² that decode is the largest piece of the image no device shares.
Here each member decodes a band of rows and the bands are gathered. Tiling would blend tiles and
change the picture; this gives the one-device decode:
  - a band carries a margin of its neighbours' rows, wide enough that the rows its 3×3 convolutions
    spoil at the cut (zeros where the neighbour's rows were, one row deeper per convolution) never
    reach the rows it owns. The margin is renewed from the neighbours' owned rows once per
    resolution, before each upsampler (and after the mid-block attention), not before every
    convolution: a handful of exchanges and under 1 % more rows at full resolution;
  - a GroupNorm's mean and variance are over the whole image: each band's float32 mean and summed
    squared deviations over its owned rows are gathered and combined (Chan's formula);
  - the mid-block attention attends over every position: it runs on the owned rows, with its keys
    and values gathered from every band.
Nearest upsampling and 1×1 convolutions need nothing. The collectives are functional, so the same
code runs eagerly or compiled, on NCCL or (in tests) gloo. The layout is diffusers' `Decoder`
(conv_in, a mid-block, up-blocks of ResNets and an upsampler, norm, conv_out), which the Flux VAE is.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


def _gather(x: torch.Tensor, dim: int, group: Any) -> torch.Tensor:
    from torch.distributed import _functional_collectives as funcol

    # all_gather_single, its new name, is missing from the torch of the GPU machines
    gather = getattr(funcol, "all_gather_single", None) or funcol.all_gather_tensor
    return gather(x.contiguous(), gather_dim=dim, group=group)


def _convs(module: torch.nn.Module) -> int:
    """The 3×3 convolutions in `module`: each spoils one more row at a band's cut."""
    count = 0
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3):
            if m.padding != (1, 1) or m.stride != (1, 1) or m.dilation != (1, 1) or m.groups != 1 \
                    or m.padding_mode != "zeros":
                raise ValueError(f"row-split decode takes plain 3×3 convolutions, not {m}")
            count += 1
        elif isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1):
            raise ValueError(f"row-split decode has no margin rule for {m}")
    return count


@dataclass
class _Member:
    """This member's place in the group: margins exist only on sides with a neighbour."""

    rank: int
    world: int
    group: Any

    def margins(self, rows: int) -> tuple[int, int]:
        return (rows if self.rank > 0 else 0, rows if self.rank < self.world - 1 else 0)

    def crop(self, x: torch.Tensor, margin: int) -> torch.Tensor:
        top, bottom = self.margins(margin)
        return x[:, :, top:x.shape[2] - bottom]

    def reband(self, owned: torch.Tensor, halo: int) -> torch.Tensor:
        """`owned` rows with `halo` of each neighbour's owned rows around them."""
        if halo == 0:
            return owned
        b = owned.shape[0]
        edges = _gather(torch.cat([owned[:, :, :halo], owned[:, :, -halo:]], dim=2), 0, self.group)
        edges = edges.unflatten(0, (self.world, b))
        parts = [edges[self.rank - 1][:, :, halo:]] if self.rank > 0 else []
        parts.append(owned)
        if self.rank < self.world - 1:
            parts.append(edges[self.rank + 1][:, :, :halo])
        return torch.cat(parts, dim=2)


def _shared_group_norm(norm: torch.nn.GroupNorm, member: _Member, margin: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """`norm` with its statistics over every band's owned rows (`margin` rows each side are not owned).
    (B, C, H, W) in, or (B, C, tokens) with no margin (the attention's own norm)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        owned = member.crop(x, margin) if margin else x
        g = owned.float().reshape(b, norm.num_groups, -1)
        n = g.shape[-1]
        var, mean = torch.var_mean(g, dim=-1, correction=0)
        stats = _gather(torch.stack([mean, var * n]), 0, member.group).unflatten(0, (member.world, 2))
        means, m2s = stats[:, 0], stats[:, 1]
        mean = means.mean(0)
        var = (m2s.sum(0) + n * (means - mean).square().sum(0)) / (n * member.world)
        y = (x.float().reshape(b, norm.num_groups, -1) - mean.unsqueeze(-1)) * torch.rsqrt(var + norm.eps).unsqueeze(-1)
        y = y.reshape(x.shape)
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


class _Opens(enum.Enum):
    START = "start"  # the latent's band
    ATTENTION = "attention"  # after the mid-block attention, on the owned rows
    UPSAMPLE = "upsample"  # at an upsampler's input


@dataclass
class _Segment:
    """The layers between two renewals of a band's margin, all at one resolution. It opens at the
    start (the latent's band), after the mid-block attention, or at an upsampler's input (whose rows
    double before its own convolution); `spoiled` counts the convolutions at its resolution."""

    opens: _Opens
    at: torch.nn.Module | None  # the attention or upsampler it opens at
    scale: int  # upsamplings before its renewal: its margin is renewed at latent rows × scale
    spoiled: int = 0
    norms: list[torch.nn.GroupNorm] = field(default_factory=list)

    @property
    def halo(self) -> int:
        """Rows taken from each neighbour when it opens (before any upsampling)."""
        return math.ceil(self.spoiled / 2) if self.opens is _Opens.UPSAMPLE else self.spoiled

    @property
    def margin(self) -> int:
        """Rows each side beyond the owned ones while it runs; enough for every spoiled row."""
        return 2 * self.halo if self.opens is _Opens.UPSAMPLE else self.halo


def _segments(decoder: torch.nn.Module) -> list[_Segment]:
    mid = decoder.mid_block
    if not isinstance(decoder.conv_norm_out, torch.nn.GroupNorm):
        raise ValueError("row-split decode takes a decoder that ends in a GroupNorm")
    attentions = [a for a in getattr(mid, "attentions", []) if a is not None]
    if len(attentions) > 1:
        raise ValueError("row-split decode takes at most one mid-block attention")
    res = 1  # the running resolution, in latent rows
    segments = [_Segment(_Opens.START, None, res)]
    segments[-1].spoiled += _convs(decoder.conv_in)

    def block(module: torch.nn.Module) -> None:
        segments[-1].spoiled += _convs(module)
        segments[-1].norms.extend(m for m in module.modules() if isinstance(m, torch.nn.GroupNorm))

    block(mid.resnets[0])
    if attentions:
        segments.append(_Segment(_Opens.ATTENTION, attentions[0], res))
    for resnet in mid.resnets[1:]:
        block(resnet)
    for up in decoder.up_blocks:
        for resnet in up.resnets:
            block(resnet)
        for upsampler in up.upsamplers or []:
            segments.append(_Segment(_Opens.UPSAMPLE, upsampler, res))  # renewed before the rows double
            segments[-1].spoiled += _convs(upsampler)
            res *= 2
    segments[-1].norms.append(decoder.conv_norm_out)
    segments[-1].spoiled += _convs(decoder.conv_out)
    return segments


def _patches(decoder: torch.nn.Module, member: _Member,
             segments: list[_Segment]) -> list[tuple[torch.nn.Module, Callable[..., Any]]]:
    out: list[tuple[torch.nn.Module, Callable[..., Any]]] = []
    for before, seg in zip([None, *segments], segments):
        out += [(norm, _shared_group_norm(norm, member, seg.margin)) for norm in seg.norms]
        if seg.opens is _Opens.ATTENTION:
            attn = seg.at
            if attn.group_norm is not None:
                out.append((attn.group_norm, _shared_group_norm(attn.group_norm, member, 0)))
            out += [(attn.to_k, _gathered_tokens(attn.to_k, member.group)),
                    (attn.to_v, _gathered_tokens(attn.to_v, member.group))]
        if seg.at is not None:
            out.append((seg.at, _renewing(seg.at, member, before.margin, seg.halo, seg.opens is _Opens.ATTENTION)))
    return out


def _renewing(module: torch.nn.Module, member: _Member, margin: int, halo: int,
              after: bool) -> Callable[..., torch.Tensor]:
    """`module` on the owned rows of a band with `margin` spoiled rows each side, its output (the
    attention's) or its input (an upsampler's) given `halo` fresh rows of each neighbour."""
    plain = type(module).forward.__get__(module)

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        owned = member.crop(x, margin)
        if after:
            return member.reband(plain(owned, *args, **kwargs), halo)
        return plain(member.reband(owned, halo), *args, **kwargs)

    return forward


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


class Bands:
    """The patched modules of one decoder for one member of one group, and its forward (compiled or
    not): made once, so the patches are the same objects every image and a compiled graph holds."""

    def __init__(self, decoder: torch.nn.Module, rank: int, world: int, group: Any, compiled: bool = False) -> None:
        self.member = _Member(rank, world, group)
        segments = _segments(decoder)
        self.patches = _patches(decoder, self.member, segments)
        self.first, self.last = segments[0].margin, segments[-1].margin
        # a neighbour's margin comes from the rows it owns
        self.min_rows = max(1, *(math.ceil(s.halo / s.scale) for s in segments))
        self.compiled = compiled
        forward = type(decoder).forward.__get__(decoder)
        if compiled:
            from studio.engine.fastpath import compile_backend

            forward = torch.compile(forward, fullgraph=False, dynamic=None, backend=compile_backend())
        self.forward = forward

    def fit(self, latent_height: int) -> bool:
        return bands_fit(latent_height, self.member.world, self.min_rows)


def decode_rows(decoder: torch.nn.Module, z: torch.Tensor, group: Any = None, bands: Bands | None = None) -> torch.Tensor:
    """`decoder(z)` (the VAE's Decoder) computed band by band over `group`; every member passes the same
    whole `z` and gets the whole picture back. The latent's height must split evenly. `bands` is a
    `Bands` made once for this decoder and group (a compiled one keeps its graph across images)."""
    import torch.distributed as dist

    group = group or dist.group.WORLD
    bands = bands or Bands(decoder, dist.get_rank(group), dist.get_world_size(group), group)
    member = bands.member
    if not bands.fit(z.shape[2]):
        raise ValueError(f"a latent {z.shape[2]} rows tall does not split into {member.world} bands "
                         f"of {bands.min_rows} rows or more")
    rows = z.shape[2] // member.world
    top, bottom = member.margins(bands.first)
    start = member.rank * rows
    band = z[:, :, start - top:start + rows + bottom]
    with _patched(bands.patches):
        if bands.compiled:
            torch._dynamo.maybe_mark_dynamic(band, 2)
            torch._dynamo.maybe_mark_dynamic(band, 3)
        out = bands.forward(band)
    return _gather(member.crop(out, bands.last), 2, group)


class SplitDecode:
    """The VAE's decoder switched to `decode_rows` over the default process group while `active()`;
    images whose latent does not split evenly, and tiled decodes, keep the whole decode.

    Compiled where the Engine compiled the whole decoder (studio/engine/fastpath.py), for the latent
    shape of the first split image (the group's warm-up) and that shape only: on a GPU the compiled
    bands compiled again at another size, a minute a person would wait for one image, so other shapes
    run the same bands eagerly, which is still quicker than the whole compiled decode (benchmarks)."""

    def __init__(self, vae: Any, compiled: bool | None = None) -> None:
        self.vae = vae
        self.compiled = hasattr(vae.decoder, "_zx_eager") if compiled is None else compiled
        self._bands: dict[bool, Bands] = {}  # compiled or not → the bands
        self._compiled_shapes: set[tuple[int, ...]] = set()

    def _pick(self, shape: tuple[int, ...]) -> bool:
        """Whether this latent shape runs the compiled bands; every member sees the same images, so
        every member picks alike (and both ways make the same collectives in the same order)."""
        if self.compiled and (not self._compiled_shapes or shape in self._compiled_shapes):
            self._compiled_shapes.add(shape)
            return True
        return False

    @contextmanager
    def active(self) -> Iterator[None]:
        import torch.distributed as dist

        decoder, vae = self.vae.decoder, self.vae
        whole = decoder.__dict__.get("forward")  # the compiled switch of fastpath.compile_vae_decoder, or none
        group = dist.group.WORLD
        world = dist.get_world_size(group)

        def bands(compiled: bool) -> Bands:
            if compiled not in self._bands:
                self._bands[compiled] = Bands(decoder, dist.get_rank(group), world, group, compiled)
            return self._bands[compiled]

        def forward(z: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if args or kwargs or getattr(vae, "use_tiling", False) or not bands(False).fit(z.shape[2]):
                return (whole or type(decoder).forward.__get__(decoder))(z, *args, **kwargs)
            return decode_rows(decoder, z, group, bands(self._pick(tuple(z.shape))))

        def decode(*args: Any, **kwargs: Any) -> Any:
            # Members may differ on tiling (each profile decides it; a worker steps down a profile after
            # an out-of-memory), and one tiling member would call the decoder tile by tile while the
            # others wait in a band's collective: they agree first, and if one tiles, all do.
            flag = torch.tensor([int(bool(getattr(vae, "use_tiling", False)))], device=vae.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
            vae.use_tiling = bool(flag.item())
            return plain_decode(*args, **kwargs)

        plain_decode = vae.decode
        decoder.forward = forward
        vae.decode = decode
        try:
            yield
        finally:
            vae.__dict__.pop("decode", None)
            if whole is None:
                decoder.__dict__.pop("forward", None)
            else:
                decoder.forward = whole
