"""Memory profiles: what stays on the GPU, chosen from free VRAM, so a 24/16/12 GB card never runs out.

Full-size Z-Image-Turbo in bf16: transformer 11.5 GiB, text encoder 7.5 GiB (0.7 GiB of it the
token-embedding table), VAE 0.16 GiB; a 1024x1024 VAE decode peaks around 2 GiB per image.

- full: everything resident; batches decode in one go.
- 24gb: everything resident except the embedding table (rows are looked up on the CPU); VAE decodes
  one image at a time (slicing) and in tiles above about 2 megapixels. Fits a 22 GiB budget.
- 16gb: transformer and VAE resident; the text encoder's layers live in pinned CPU memory and are
  copied in one at a time to encode a new prompt (cached prompts cost nothing); VAE tiles from
  1024x1024 up (an untiled 1024x1024 decode alone peaks at about 2 GiB); batches run one image at a time.
- 12gb: the transformer's blocks are streamed from pinned CPU memory group by group on a side
  stream (diffusers group offloading), the text encoder as in 16gb, small VAE tiles, one image at a time.

A ControlNet adds its weights on top (Union 2.1: 6.2 GiB): `make_room` plans the GPU with it and,
where the plan crosses the profile's budget (or what the card has for this process, if less), moves
the text encoder's layers out as 16gb does; they come back once the room exists again (the ControlNet
dropped, or one that fits beside them in its place).

`choose_profile` and `plan_room` are pure functions, so they can be tested anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from studio.core.spec import MemoryProfile

GiB = 1024**3
# What one image needs on the GPU beyond the resident weights: activations and the VAE's decode. The
# largest measured under the 24gb profile (hires fix to 2048x2048, docs/benchmarks.md "Images in").
WORKING_GIB = 2.6


@dataclass(frozen=True)
class Profile:
    name: str
    budget_gib: float | None  # usable VRAM the profile is planned for (None: no limit)
    min_free_gib: float  # free VRAM at which auto-selection picks it
    text_encoder: str  # "resident" | "resident-embed-cpu" | "swap"
    transformer: str  # "resident" | "stream"
    vae_slicing: bool
    tile_above_px: int | None  # VAE tiling when width*height exceeds this
    max_batch: int | None = None  # images denoised together at most (None: no limit)


# What each of core's MemoryProfile members means here, in its order (a str Enum: PROFILES["24gb"] works).
PROFILES: dict[MemoryProfile, Profile] = {
    MemoryProfile.FULL: Profile("full", None, 30.0, "resident", "resident", False, 2048 * 2048 + 1),
    MemoryProfile.GB24: Profile("24gb", 22.0, 20.5, "resident-embed-cpu", "resident", True, 2_100_000),
    MemoryProfile.GB16: Profile("16gb", 14.5, 13.5, "swap", "resident", True, 1_000_000, max_batch=1),
    MemoryProfile.GB12: Profile("12gb", 10.5, 0.0, "swap", "stream", True, 600_000, max_batch=1),
}
PROFILE_NAMES = MemoryProfile.names()


class ProfileError(ValueError):
    """An unknown profile name; the message lists the valid ones."""


def choose_profile(free_bytes: int | None, total_bytes: int | None = None) -> str:
    """The largest profile that the free VRAM allows (no CUDA device: "full", nothing to fit)."""
    if free_bytes is None:
        return MemoryProfile.FULL.value
    free = free_bytes / GiB
    fits = [p for p in MemoryProfile if free >= PROFILES[p].min_free_gib]
    return (fits[0] if fits else list(MemoryProfile)[-1]).value


def resolve_profile(name: str | None, device: torch.device) -> Profile:
    """A profile by name ("auto"/None: from the device's free memory now)."""
    key = (name or "auto").strip().lower().replace(" ", "")
    aliases = {"24": "24gb", "16": "16gb", "12": "12gb", "24g": "24gb", "16g": "16gb", "12g": "12gb"}
    key = aliases.get(key, key)
    if key == "auto":
        if device.type != "cuda":
            return PROFILES["full"]
        free, total = torch.cuda.mem_get_info(device)
        key = choose_profile(free, total)
    if key not in PROFILES:
        raise ProfileError(f"Unknown memory profile {name!r}; choose one of: auto, {', '.join(PROFILES)}.")
    return PROFILES[key]


class CpuSwap:
    """Keep a module's weights in pinned CPU memory and copy them to the GPU only while it is used.

    Copy-in is one pass of non-blocking host-to-device copies; copy-out just points the parameters
    back at the pinned copies (no device-to-host traffic).
    """

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module, self.device = module, device
        self.host: dict[str, torch.Tensor] = {}
        for name, t in self._tensors():
            cpu = t.detach().to("cpu")
            self.host[name] = cpu.pin_memory() if torch.cuda.is_available() else cpu
        self.offload()

    def _tensors(self):
        yield from self.module.named_parameters()
        yield from self.module.named_buffers()

    def onload(self) -> None:
        for name, t in self._tensors():
            t.data = self.host[name].to(self.device, non_blocking=True)

    def offload(self) -> None:
        for name, t in self._tensors():
            t.data = self.host[name]


class LayerSwap:
    """Each layer of a stack lives in pinned CPU memory and is copied in just before it runs.

    Only one layer is on the GPU at a time, so a 7.5 GiB text encoder costs about 0.2 GiB of VRAM;
    the price is one host-to-device pass over its weights per new prompt (cached prompts skip it).
    """

    def __init__(self, layers: torch.nn.ModuleList, device: torch.device) -> None:
        self.swaps = [CpuSwap(layer, device) for layer in layers]
        self._hooks: list[Any] = []
        for layer, sw in zip(layers, self.swaps):
            self._hooks.append(layer.register_forward_pre_hook(lambda _m, _a, sw=sw: sw.onload()))
            self._hooks.append(layer.register_forward_hook(lambda _m, _a, _o, sw=sw: sw.offload()))

    def undo(self) -> None:
        """The layers back on the device for good: hooks removed, the pinned copies let go. All or
        nothing: every layer is copied first, so an out-of-memory midway leaves the swap working."""
        copies = [[(t, sw.host[name].to(sw.device)) for name, t in sw._tensors()] for sw in self.swaps]
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for sw, layer in zip(self.swaps, copies):
            for t, on_device in layer:
                t.data = on_device
            sw.host.clear()
        self.swaps.clear()


def apply_profile(pipe: Any, profile: Profile, device: torch.device) -> dict[str, Any]:
    """Place the pipeline's parts for `profile`; returns handles the engine needs (swap, notes)."""
    state: dict[str, Any] = {"profile": profile.name, "swap": None}
    if device.type != "cuda":
        return state
    te = pipe.text_encoder
    if profile.text_encoder in ("resident-embed-cpu", "swap"):
        te.get_input_embeddings().to("cpu")
    if profile.text_encoder == "swap":
        state["layers"] = LayerSwap(te.layers, device)
    if profile.transformer == "stream":
        from diffusers.hooks import apply_group_offloading

        pipe.transformer.to("cpu")
        apply_group_offloading(pipe.transformer, onload_device=device, offload_device=torch.device("cpu"),
                               offload_type="block_level", num_blocks_per_group=1, use_stream=True)
    if profile.vae_slicing:
        pipe.vae.enable_slicing()
    if profile.tile_above_px is not None and profile.tile_above_px <= 1_000_000:
        pipe.vae.tile_sample_min_size = 512
        pipe.vae.tile_latent_min_size = 64
    torch.cuda.empty_cache()
    return state


def use_tiling(profile: Profile, width: int, height: int) -> bool:
    """Whether a width x height decode should go through the VAE in tiles under `profile`."""
    return profile.tile_above_px is not None and width * height > profile.tile_above_px


def cap_process_memory(device: torch.device, budget_gib: float | None) -> float | None:
    """Emulate a smaller card: cap this process's CUDA allocator at `budget_gib` (returns the fraction)."""
    if device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = 1.0 if budget_gib is None else min(1.0, budget_gib * GiB / total)
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    return fraction


def tensor_bytes(module: torch.nn.Module, exclude: Iterable[torch.nn.Module] = ()) -> int:
    """Bytes of a module's parameters and buffers, each tensor once, leaving out those `exclude` holds."""
    skip = {id(t) for m in exclude for t in (*m.parameters(), *m.buffers())}
    seen: dict[int, int] = {}
    for t in (*module.parameters(), *module.buffers()):
        if id(t) not in skip:
            seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


@dataclass(frozen=True)
class Sizes:
    """The pipeline's weights in GiB, split the way the profiles place them."""

    transformer: float
    text_layers: float  # the text encoder's decoder layers (what "swap" keeps in CPU memory)
    text_embed: float  # its token-embedding table
    text_rest: float  # the rest of it (final norm)
    vae: float

    @classmethod
    def of(cls, pipe: Any) -> Sizes:
        te = pipe.text_encoder
        layers, embed = tensor_bytes(te.layers), tensor_bytes(te.get_input_embeddings())
        return cls(transformer=tensor_bytes(pipe.transformer) / GiB, text_layers=layers / GiB,
                   text_embed=embed / GiB, text_rest=(tensor_bytes(te) - layers - embed) / GiB,
                   vae=tensor_bytes(pipe.vae) / GiB)


@dataclass(frozen=True)
class Placement:
    """Where the text encoder's layers live with `extra_gib` more (a ControlNet) on the GPU, and the plan."""

    text_encoder: str  # "resident" | "swap"
    planned_gib: float  # resident weights + the extra + WORKING_GIB, as placed
    budget_gib: float | None
    extra_gib: float

    @property
    def fits(self) -> bool:
        return self.budget_gib is None or self.planned_gib <= self.budget_gib


def planned_gib(profile: Profile, sizes: Sizes, extra_gib: float = 0.0, text_swapped: bool | None = None) -> float:
    """The GPU memory one image needs under `profile`: what stays resident, `extra_gib`, and WORKING_GIB.

    text_swapped: whether the text encoder's layers are in CPU memory (None: as the profile has it).
    A streamed transformer and swapped text-encoder layers count nothing: the one group or layer on the
    GPU at a time is within the working memory."""
    swapped = profile.text_encoder == "swap" if text_swapped is None else text_swapped
    transformer = sizes.transformer if profile.transformer == "resident" else 0.0
    text = sizes.text_rest + (0.0 if swapped else sizes.text_layers)
    text += sizes.text_embed if profile.text_encoder == "resident" else 0.0
    return transformer + text + sizes.vae + extra_gib + WORKING_GIB


def plan_room(profile: Profile, sizes: Sizes, extra_gib: float) -> Placement:
    """Where the text encoder's layers go when `extra_gib` more must sit on the GPU under `profile`.

    They stay resident where the plan keeps within the budget (or there is none), else they move to
    CPU memory; `fits` says whether even that is enough."""
    swapped = profile.text_encoder == "swap"
    plan = planned_gib(profile, sizes, extra_gib, swapped)
    if not swapped and profile.budget_gib is not None and plan > profile.budget_gib:
        swapped, plan = True, planned_gib(profile, sizes, extra_gib, True)
    return Placement("swap" if swapped else "resident", plan, profile.budget_gib, extra_gib)


def device_budget(profile: Profile, device: torch.device) -> float | None:
    """The GiB a plan may use on `device`: the profile's budget, lowered on a GPU to what this process
    can have there now (its own reservations and what is free), since auto-selection picks a profile
    below its budget (min_free_gib) and other programs may hold part of the card."""
    if device.type != "cuda":
        return profile.budget_gib
    free, _total = torch.cuda.mem_get_info(device)
    have = (free + torch.cuda.memory_reserved(device)) / GiB
    return have if profile.budget_gib is None else min(profile.budget_gib, have)


def make_room(pipe: Any, state: dict[str, Any], profile: Profile, device: torch.device,
              extra_bytes: int) -> Placement:
    """Plan `extra_bytes` more on `device` (a ControlNet, before it moves there; 0 once none is) and
    place the text encoder's layers as `plan_room` says: out to pinned CPU memory where the extra would
    cross the budget, back on the device where the room exists again.

    `state` is `apply_profile`'s; its "layers" holds the swap while one is made. A profile that swaps
    them itself always plans "swap", so only a swap made here is ever undone."""
    placement = plan_for(pipe, profile, device, extra_bytes)
    if placement.text_encoder == "swap" and state.get("layers") is None:
        state["layers"] = LayerSwap(pipe.text_encoder.layers, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    elif placement.text_encoder == "resident" and state.get("layers") is not None:
        state["layers"].undo()  # raises (an out-of-memory) with the swap still in place
        del state["layers"]
    return placement


def plan_for(pipe: Any, profile: Profile, device: torch.device, extra_bytes: int) -> Placement:
    """`plan_room` for `extra_bytes` more, under what `device` can have now (`device_budget`)."""
    budget = device_budget(profile, device)
    return plan_room(dataclasses.replace(profile, budget_gib=budget), Sizes.of(pipe), extra_bytes / GiB)
