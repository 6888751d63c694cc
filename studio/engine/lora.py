"""LoRA adapters on a loaded pipeline: loaded once per file, switched between images.

Loading goes through diffusers' own path (`ZImagePipeline.load_lora_weights`, its Z-Image converter
for the non-diffusers layouts, peft underneath). Before that, `normalize` rewrites the few forms
diffusers 0.42's converter does not map (fused `qkv` outside its dotted form, `attention.out` with
`lora_A/B` names, the original checkpoints' `final_layer` / `x_embedder`, keys without a prefix), and
`check_fit` refuses a file unless every key lands on a linear of this transformer with the right
shape: a LoRA is loaded whole or not at all, never half (the "LoRA has no effect" reports).

`LoraCache.apply` makes a list of (file, strength) the active set: a file already loaded (same
content hash) costs nothing, a new one is loaded once; a changed set or strength is only
`set_adapters`. Strength 0 and files not in the set are switched off, not computed.

Merge mode (`merge=True`, what compiled engines use): no peft layers at all. The active set's updates
(strength x B·A, summed per linear, in float32) are added into the linears' weights, whose originals
are kept aside the first time a linear changes and copied back before the next set is merged. So an
image costs what it costs without LoRAs (the adapter path's extra reads and writes of every
activation are gone), the compiled blocks never see a new module (nothing recompiles, not even for
a new file), a captured CUDA graph still reads the same weight storage, and turning LoRAs off gives
back the original weights bit for bit.
"""

from __future__ import annotations

import hashlib
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from studio.core.lora_text import check_strength
from studio.models import loras as lora_files
from studio.models.loras import Layout, LoraError, LoraInfo

ADAPTER_PREFIX = "zx_"
MAX_CACHED = 8  # loaded adapters kept beyond the active set (each costs its own weights in memory)
_DOWN_ENDS = (".lora_A.weight", ".lora_down.weight", ".lora_A.default.weight")
_UP_FOR = {".lora_A.weight": ".lora_B.weight", ".lora_down.weight": ".lora_up.weight",
           ".lora_A.default.weight": ".lora_B.default.weight"}


@dataclass
class Loaded:
    name: str  # the adapter name inside peft
    info: LoraInfo
    load_s: float
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None  # merge mode: module -> (A, B) on device


@dataclass
class ApplyReport:
    """What one `apply` did: files it had to load, the active (adapter, strength) set, the seconds spent."""

    loaded: list[str] = field(default_factory=list)
    active: list[tuple[str, float]] = field(default_factory=list)
    changed: bool = False
    seconds: float = 0.0


# --- the file's keys, before diffusers sees them -------------------------------------------------


def _split_qkv(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LoRA on the fused q/k/v projection as three LoRAs on to_q, to_k, to_v (same down, up in thirds).

    Exact: the fused projection's output is [q; k; v], so its update B·A splits by rows of B.
    """
    out = dict(sd)
    for key in list(sd):
        end = next((e for e in _DOWN_ENDS if key.endswith(e)), None)
        if end is None:
            continue
        module = key[: -len(end)]
        m = re.search(r"([._])qkv$", module)
        if m is None:
            continue
        sep, base = m.group(1), module[: m.start()]
        if f"{base}{sep}to_q{end}" in sd:
            continue  # split keys next to the fused ones: leave it to the fit check to name
        up_key = module + _UP_FOR[end]
        if up_key not in sd:
            continue
        down, up = out.pop(key), out.pop(up_key)
        alpha = out.pop(f"{module}.alpha", None)
        for proj, chunk in zip("qkv", up.chunk(3, dim=0)):
            target = f"{base}{sep}to_{proj}"
            out[target + end] = down.clone()
            out[target + _UP_FOR[end]] = chunk.contiguous()
            if alpha is not None:
                out[f"{target}.alpha"] = alpha.clone()
    return out


def normalize(sd: dict[str, torch.Tensor], layout: Layout) -> dict[str, torch.Tensor]:
    """Rewrite what diffusers' Z-Image converter would miss, keeping each file's own layout otherwise."""
    sd = {(k[len("model."):] if k.startswith("model.diffusion_model.") else k): v for k, v in sd.items()}
    sd = _split_qkv(sd)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        k = key
        if layout is Layout.KOHYA:
            k = re.sub(r"^lora_unet_final_layer_", "lora_unet_all_final_layer_2-1_", k)
            k = re.sub(r"^lora_unet_x_embedder(?=[._])", "lora_unet_all_x_embedder_2-1", k)
        else:
            k = re.sub(r"(^|\.)attention\.out\.(?=lora_[AB]\.)", r"\1attention.to_out.0.", k)
            k = re.sub(r"^((?:transformer|diffusion_model)\.)?final_layer\.", r"\1all_final_layer.2-1.", k)
            k = re.sub(r"^((?:transformer|diffusion_model)\.)?x_embedder\.", r"\1all_x_embedder.2-1.", k)
        out[k] = value
    if layout is Layout.PEFT:
        out = {f"transformer.{k}": v for k, v in out.items()}
    return out


def to_diffusers(sd: dict[str, torch.Tensor], layout: Layout) -> dict[str, torch.Tensor]:
    """The state dict in diffusers' `transformer.<module>.lora_A/B.weight` form (alphas folded in)."""
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_z_image_lora_to_diffusers

    sd = normalize(sd, layout)
    has_alpha = any(k.endswith(".alpha") for k in sd)
    if layout in (Layout.DIFFUSERS, Layout.PEFT) and not has_alpha:
        return sd
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    return _convert_non_diffusers_z_image_lora_to_diffusers(sd)


# --- does it fit this transformer? ---------------------------------------------------------------


def check_fit(transformer: Any, sd: dict[str, torch.Tensor], info: LoraInfo) -> None:
    """Raise LoraError unless every key is a lora_A/lora_B of a linear of `transformer` with its shapes."""
    modules = dict(transformer.named_modules())
    unmatched, wrong, fp8 = [], [], []
    for key, value in sd.items():
        m = re.match(r"transformer\.(.+)\.lora_([AB])\.weight$", key)
        if m is None:
            unmatched.append(key)
            continue
        mod = modules.get(m.group(1))
        base = getattr(mod, "base_layer", mod)
        if base is None:
            unmatched.append(key)
        elif type(base).__name__ == "FP8Linear":
            fp8.append(key)
        elif not isinstance(base, torch.nn.Linear) or value.dim() != 2:
            unmatched.append(key)
        elif (m.group(2) == "A" and value.shape[1] != base.in_features) or (
                m.group(2) == "B" and value.shape[0] != base.out_features):
            wrong.append(f"{m.group(1)} {tuple(value.shape)} vs {base.out_features}x{base.in_features}")
    name = Path(info.path).name
    if fp8:
        raise LoraError(f"{name}: LoRAs do not work in FP8 mode yet (its linears are FP8): "
                        "turn FP8 off to use LoRAs.")
    if wrong:
        raise LoraError(f"{name} does not fit this model ({len(wrong)} of {len(sd)} tensors have other shapes, "
                        f"e.g. {wrong[0]}): it was made for another base model ({info.base_model or 'unknown'}).")
    if unmatched:
        raise LoraError(f"{name} ({info.layout.value} layout): {len(unmatched)} of {len(sd)} keys match no "
                        f"layer of this model, e.g. {', '.join(_original(unmatched[:3]))}; nothing was loaded.")


def _keep(weight: torch.Tensor) -> torch.Tensor:
    """A copy of `weight` to restore it from: on its GPU while plenty is free there, else in (pinned) host memory."""
    if weight.is_cuda:
        free, _total = torch.cuda.mem_get_info(weight.device)
        if free > 2 * weight.numel() * weight.element_size() + (4 << 30):
            return weight.detach().clone()
        try:
            return weight.detach().to("cpu").pin_memory()
        except RuntimeError:  # no pinned memory to be had: a plain copy restores as exactly, only slower
            return weight.detach().to("cpu")
    return weight.detach().clone()


def _original(keys: list[str]) -> list[str]:
    return [k.removeprefix("transformer.") for k in keys]


def _allow_recompiles(loaded: int) -> None:
    """Each file loaded into compiled blocks changes their code once (new modules): raise dynamo's
    per-code recompile limit with the count, since the blocks compile with fullgraph=True and a
    limit reached is an error there, not an eager fallback."""
    import torch._dynamo.config as dynamo_config

    want = 8 + 4 * loaded
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name) and getattr(dynamo_config, name) < want:
            setattr(dynamo_config, name, want)


# --- the cache ------------------------------------------------------------------------------------


class LoraCache:
    """The adapters loaded into one pipeline's transformer, by file content, and the active set."""

    def __init__(self, pipe: Any, max_cached: int = MAX_CACHED, *, stable_graphs: bool = False,
                 merge: bool = False) -> None:
        self.pipe = pipe
        self.max_cached = max_cached
        self.merge = merge
        self._originals: dict[str, torch.Tensor] = {}  # merge mode: module -> its weight before any merge
        self._merged: set[str] = set()  # merge mode: modules whose weight holds a merged update now
        # Compiled blocks: keep every loaded adapter in the forward with its strength in a tensor (0 when
        # unused), so a new set or strength changes data, not the code dynamo traced (no recompile).
        self.stable_graphs = stable_graphs
        self.loaded: OrderedDict[str, Loaded] = OrderedDict()  # content hash -> adapter, LRU order
        self.active: list[tuple[str, float]] = []  # (adapter name, strength) now in use

    @property
    def transformer(self) -> Any:
        return self.pipe.transformer

    def apply(self, loras: Sequence[tuple[str | Path, float]]) -> ApplyReport:
        """Make `loras` the set the next images use; LoraError, with the set in use unchanged, if one cannot be used.

        Files are checked one by one: one listed before a bad one may stay loaded (unused) in the cache.
        """
        t0 = time.perf_counter()
        report = ApplyReport()
        wanted: dict[str, float] = {}  # content hash -> strength (the same file twice: strengths add up)
        infos: dict[str, LoraInfo] = {}
        for path, strength in loras:
            info = lora_files.inspect(path)
            check_strength(float(strength), info.name)
            reason = lora_files.fits(info, dict(self.transformer.config))
            if reason:
                raise LoraError(reason)
            # the same tensor bytes under other key names are another LoRA: both go into the identity
            key = f"{lora_files.content_hash(path)}-{info.keys_digest[:12]}"
            wanted[key] = wanted.get(key, 0.0) + float(strength)
            infos[key] = info
        for key, info in infos.items():
            if key not in self.loaded:
                self._load(key, info)
                report.loaded.append(info.name)
            self.loaded.move_to_end(key)
        active = [(self.loaded[k].name, s) for k, s in wanted.items() if s != 0.0]
        report.changed = active != self.active
        if report.changed:
            self._activate(active)
        self._evict(keep={k for k in wanted})
        report.active = list(active)
        report.seconds = time.perf_counter() - t0
        return report

    def _load(self, key: str, info: LoraInfo) -> None:
        from safetensors.torch import load_file

        name = ADAPTER_PREFIX + hashlib.sha1(key.encode()).hexdigest()[:16]
        t0 = time.perf_counter()
        try:
            raw = load_file(info.path, device="cpu")
        except Exception as exc:  # noqa: BLE001 - a header that read fine over data that does not
            raise LoraError(f"{Path(info.path).name} is a damaged safetensors file ({type(exc).__name__}); "
                            "download it again.") from exc
        try:
            sd = to_diffusers(raw, info.layout)
        except Exception as exc:  # noqa: BLE001 - the converter's own refusals are ValueErrors with long texts
            raise LoraError(f"{Path(info.path).name} ({info.layout.value} layout) could not be converted "
                            f"({type(exc).__name__}; keys such as {', '.join(list(raw)[:3])}); "
                            "nothing was loaded.") from exc
        check_fit(self.transformer, sd, info)
        dtype = next(self.transformer.parameters()).dtype
        if self.merge:
            device = next(self.transformer.parameters()).device
            pairs = {m.group(1): (sd[k].to(device, dtype), sd[k[: -len("A.weight")] + "B.weight"].to(device, dtype))
                     for k in sd if (m := re.match(r"transformer\.(.+)\.lora_A\.weight$", k))}
            self.loaded[key] = Loaded(name, info, time.perf_counter() - t0, pairs)
            return
        sd = {k: v.to(dtype) for k, v in sd.items()}
        before = list(self.active)
        try:
            with warnings.catch_warnings():  # peft warns on every adapter after the first: several is the point
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                self.pipe.load_lora_weights(sd, adapter_name=name)
            got = sum(1 for mod in self.transformer.modules()
                      if name in getattr(mod, "lora_A", {}))
            want = len(sd) // 2
            if got != want:
                raise LoraError(f"{Path(info.path).name}: only {got} of its {want} layers took the LoRA; "
                                "nothing was loaded.")
        except Exception as exc:
            self._drop(name)
            self._activate(before, force=True)
            if isinstance(exc, LoraError):
                raise
            raise LoraError(f"{Path(info.path).name} could not be loaded: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
        # a freshly loaded adapter becomes active in peft; the set in use stays what it was until _activate
        self.loaded[key] = Loaded(name, info, time.perf_counter() - t0)
        if self.stable_graphs:
            _allow_recompiles(len(self.loaded))
        self._activate(before, force=True)

    def _drop(self, name: str) -> None:
        if self.merge:
            return  # nothing was put into the model: forgetting the Loaded entry is all
        if name in getattr(self.transformer, "peft_config", {}):
            self.pipe.delete_adapters([name])

    def _activate(self, active: list[tuple[str, float]], force: bool = False) -> None:
        if not force and active == self.active:
            return
        if self.merge:
            self._merge(active)
            self.active = list(active)
            return
        if not getattr(self.transformer, "peft_config", None):
            self.active = list(active)
            return
        if self.stable_graphs:
            self._set_scalings(dict(active))
        elif active:
            self.pipe.enable_lora()
            self.pipe.set_adapters([n for n, _ in active], [s for _, s in active])
        else:
            self.pipe.disable_lora()
        self.active = list(active)

    @torch.no_grad()
    def _merge(self, active: list[tuple[str, float]]) -> None:
        """Put the original weights back where a set was merged, then add this set's updates."""
        modules = dict(self.transformer.named_modules())
        for module in self._merged:
            modules[module].weight.copy_(self._originals[module], non_blocking=True)
        self._merged = set()
        by_name = {entry.name: entry for entry in self.loaded.values()}
        targets: dict[str, list[tuple[torch.Tensor, torch.Tensor, float]]] = {}
        for name, strength in active:
            for module, (down, up) in (by_name[name].pairs or {}).items():
                targets.setdefault(module, []).append((down, up, strength))
        for module, parts in targets.items():
            weight = modules[module].weight
            if module not in self._originals:
                self._originals[module] = _keep(weight)
            update = sum(strength * (up.float() @ down.float()) for down, up, strength in parts)
            weight.copy_((weight.float() + update).to(weight.dtype))
            self._merged.add(module)

    def _set_scalings(self, strengths: dict[str, float]) -> None:
        """Every loaded adapter active, its strength written into a 0-dim tensor in place (the stable mode)."""
        from peft.tuners.lora import LoraLayer

        names = sorted(self.transformer.peft_config)
        for mod in self.transformer.modules():
            if not isinstance(mod, LoraLayer):
                continue
            present = [n for n in names if n in mod.lora_A]
            if list(mod.active_adapters) != present or mod.disable_adapters:
                mod.enable_adapters(True)
                mod.set_adapter(present, inference_mode=True)
            for n in present:
                value = strengths.get(n, 0.0) * mod.lora_alpha[n] / mod.r[n]
                current = mod.scaling[n]
                if isinstance(current, torch.Tensor):
                    current.fill_(value)
                else:
                    mod.scaling[n] = torch.tensor(value, device=mod.lora_A[n].weight.device)

    def _evict(self, keep: set[str]) -> None:
        while len(self.loaded) > self.max_cached:
            victim = next((k for k in self.loaded if k not in keep), None)
            if victim is None:
                return
            self._drop(self.loaded.pop(victim).name)


# --- diffusers -> the other layouts (the demo LoRA's copies; tests) -----------------------------


def convert_to(sd: dict[str, torch.Tensor], layout: Layout, *, alpha_ratio: float | None = None,
               fuse_qkv: bool = False) -> dict[str, torch.Tensor]:
    """A diffusers-layout LoRA (`transformer.<module>.lora_A/B.weight`) in another trainer's layout.

    `alpha_ratio` (kohya): write `.alpha` = ratio x rank and scale lora_up by 1/ratio, so the update is
    unchanged. `fuse_qkv`: one LoRA on the original checkpoints' fused `attention.qkv` (down matrices
    stacked, up matrices block-diagonal: the same update at three times the rank).
    """
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, value in sd.items():
        if key.endswith(".lora_A.weight"):
            module = key.removeprefix("transformer.")[: -len(".lora_A.weight")]
            pairs[module] = (value, sd[key.replace(".lora_A.weight", ".lora_B.weight")])
    if fuse_qkv:
        for module in [m for m in pairs if m.endswith(".attention.to_q")]:
            base = module[: -len(".to_q")]
            parts = [pairs.pop(f"{base}.to_{p}") for p in "qkv"]
            down = torch.cat([a for a, _ in parts])
            up = torch.block_diag(*[b for _, b in parts])
            pairs[f"{base}.qkv"] = (down, up)
    out: dict[str, torch.Tensor] = {}
    for module, (down, up) in pairs.items():
        if layout is Layout.KOHYA:
            name = "lora_unet_" + module.replace(".", "_")
            ratio = alpha_ratio or 1.0
            out[f"{name}.lora_down.weight"] = down.contiguous()
            out[f"{name}.lora_up.weight"] = (up / ratio).contiguous()
            if alpha_ratio is not None:
                out[f"{name}.alpha"] = torch.tensor(ratio * down.shape[0], dtype=down.dtype)
        elif layout is Layout.AI_TOOLKIT:
            out[f"diffusion_model.{module}.lora_A.weight"] = down.contiguous()
            out[f"diffusion_model.{module}.lora_B.weight"] = up.contiguous()
        elif layout is Layout.DIFFSYNTH:
            out[f"{module}.lora_A.default.weight"] = down.contiguous()
            out[f"{module}.lora_B.default.weight"] = up.contiguous()
        elif layout is Layout.DIFFUSERS:
            out[f"transformer.{module}.lora_A.weight"] = down.contiguous()
            out[f"transformer.{module}.lora_B.weight"] = up.contiguous()
        else:
            raise ValueError(f"cannot write the {layout.value} layout")
    return out
