"""The CUDA fast path: TF32, a chosen attention backend, and regional compile.

Each part is switchable and none changes what the model computes beyond kernel rounding (prompt
encoding: studio/engine/text_encode.py and text_graphs.py):
- regional compilation compiles the repeated transformer block once (all 30 layers share the graph)
  with the sequence length marked dynamic, so new prompt lengths and image sizes do not recompile;
- the compiled artifacts go to an on-disk cache under the studio's cache dir, so a restart reuses them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from studio.engine.fused_attention import FusedZImageAttnProcessor

# diffusers' names for torch's own SDPA kernels ("native" lets torch pick), then our fused processor
# (studio/engine/fused_attention.py: real-valued RoPE, cuDNN on q/k/v views without copies).
FUSED_ATTENTION = ("fused-cudnn", "fused-sdpa")
ATTENTION_BACKENDS = ("_native_cudnn", "_native_flash", "_native_efficient", "native", *FUSED_ATTENTION)
# Measured on H100 (docs/benchmarks.md, "GPU fast path", second pass): torch's own pick under "native"
# is already cuDNN's kernel there; the fused processor saves the complex-RoPE fallback kernels and
# the q/k/v copy: one denoising step 100.8 -> 97.5 ms (call 1), 101.4 -> 99.2 ms (call 2).
DEFAULT_ATTENTION = "fused-cudnn"


def enable_tf32() -> None:
    """Let float32 matmuls and convolutions use TF32 (the few fp32 pieces: timestep MLP, RoPE, scheduler)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    # not cudnn.benchmark: it re-tunes the VAE's convolutions at every new image size (2 s on H100)
    # for no measured gain in decode time.


def set_attention_backend(transformer: Any, name: str) -> str:
    """Route the transformer's attention through `name`; returns the backend in use."""
    import logging

    from diffusers.utils import logging as dlogging

    from studio.engine import fused_attention

    if name in FUSED_ATTENTION:
        fused_attention.install(transformer, name.split("-", 1)[1])
        return name
    if fused_attention.uses_fused(transformer):  # back to diffusers' own processor first
        from diffusers.models.transformers.transformer_z_image import ZSingleStreamAttnProcessor

        for module in transformer.modules():
            if isinstance(getattr(module, "processor", None), fused_attention.FusedZImageAttnProcessor):
                module.set_processor(ZSingleStreamAttnProcessor())
    level = dlogging.get_verbosity()
    dlogging.set_verbosity(logging.ERROR)  # it warns "experimental" on every call
    try:
        transformer.set_attention_backend(name)
    finally:
        dlogging.set_verbosity(level)
    return name


def compile_cache_dir(root: Path | None = None) -> Path:
    """Where compiled kernels and graphs are kept between runs (platformdirs cache dir by default)."""
    if root is None:
        from studio.core.paths import get_paths

        root = get_paths().cache_dir
    return Path(root) / "torch-compile"


def use_compile_cache(folder: Path) -> Path:
    """Point inductor's FX-graph / autotune / Triton caches at `folder` (before the first compile)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor")
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    try:  # inductor reads the env var lazily, but an already-imported config keeps its value
        import torch._inductor.config as icfg

        icfg.fx_graph_cache = True
    except Exception:  # noqa: BLE001 - older torch: the env vars are enough
        pass
    return folder


MEGA_CACHE_FILE = "mega-cache.bin"


def load_mega_cache(folder: Path) -> bool:
    """Load torch.compiler's portable cache artifacts saved by a previous run, if any."""
    path = folder / MEGA_CACHE_FILE
    if not path.is_file() or not hasattr(torch.compiler, "load_cache_artifacts"):
        return False
    try:
        torch.compiler.load_cache_artifacts(path.read_bytes())
        return True
    except Exception:  # noqa: BLE001 - a stale or foreign cache is just a cold start
        return False


def save_mega_cache(folder: Path) -> int:
    """Save what this process compiled as one file; returns its size in bytes (0 if unsupported)."""
    if not hasattr(torch.compiler, "save_cache_artifacts"):
        return 0
    try:
        got = torch.compiler.save_cache_artifacts()
    except Exception:  # noqa: BLE001
        return 0
    if not got:
        return 0
    return len(got[0]) if write_replacing(folder / MEGA_CACHE_FILE, got[0]) else 0


def write_replacing(path: Path, data: bytes) -> bool:
    """Write `path` whole or not at all; False when it cannot be written.

    Every worker of a machine saves into the one compile cache as its warm-up ends, often at the same
    moment: each writes its own temporary file and renames it over the last, so readers see one whole
    file and no writer trips over another's. A cache that cannot be saved only costs the next start a
    compile, so it never fails the warm-up.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return False


class CompileSwitch:
    """Per-block choice between the eager and the compiled forward, flipped once warm-up is done.

    Requests that arrive while the blocks compile run eagerly instead of waiting for the compile.
    """

    def __init__(self) -> None:
        self.ready = False
        self.lock = threading.Lock()


def _prepare_dynamic(args: tuple, kwargs: dict, real_rope: bool = False) -> tuple:
    """Mark what varies with prompt, size and batch as dynamic, so one graph serves them all.

    Sequence length (dim 1) varies with prompt and image size; batch (dim 0) is marked only when
    above 1 (size 1 is always specialised). The RoPE table arrives as a slice of a padded tensor,
    whose batch stride would otherwise be guarded against the sequence length: it is made contiguous
    (and, for the fused attention, real-valued, so no complex op reaches the compiler).
    """
    args = list(args)
    if len(args) > 2 and isinstance(args[2], torch.Tensor):
        f = args[2]
        if real_rope and f.is_complex():
            f = torch.view_as_real(f)
        # a fresh tensor: .contiguous() keeps the odd stride of a size-1 batch dim
        args[2] = torch.empty(f.shape, dtype=f.dtype, device=f.device).copy_(f)
    batched = isinstance(args[0], torch.Tensor) and args[0].shape[0] > 1
    for i, t in enumerate(args):
        if not isinstance(t, torch.Tensor):
            continue
        if i < 3 and t.dim() >= 2 and t.shape[1] > 1:
            torch._dynamo.maybe_mark_dynamic(t, 1)
        if batched and t.shape[0] > 1:
            torch._dynamo.maybe_mark_dynamic(t, 0)
    return tuple(args)


def compile_backend() -> str:
    """torch.compile's backend: inductor, or "eager" (guards and graphs only) for tests."""
    return os.environ.get("ZAOXIANG_COMPILE_BACKEND", "inductor")


def compile_blocks(transformer: Any, switch: CompileSwitch, *, dynamic: str = "mark",
                   mode: str | None = None) -> int:
    """Regionally compile every ZImageTransformerBlock; returns how many blocks were wrapped.

    dynamic: "mark" marks the sequence dim dynamic up front (one graph for all prompt lengths and
    sizes), "false" compiles one graph per shape, "auto" lets dynamo generalise after a recompile.
    """
    try:  # equal sizes (a 64-token prompt, the 64-wide RoPE table) must not be fused into one symbol
        import torch.fx.experimental._config as fx_config

        fx_config.use_duck_shape = False
    except Exception:  # noqa: BLE001
        pass
    backend = compile_backend()
    count = 0
    for block in transformer.modules():
        if type(block).__name__ != "ZImageTransformerBlock" or hasattr(block, "_zx_eager"):
            continue
        eager = block.forward
        compiled = torch.compile(eager, fullgraph=True, mode=mode, backend=backend,
                                 dynamic=False if dynamic == "false" else None)

        def forward(*args: Any, _eager: Callable = eager, _compiled: Callable = compiled, _block: Any = block,
                    **kwargs: Any) -> torch.Tensor:
            if not switch.ready and not getattr(_tls, "warming", False):
                return _eager(*args, **kwargs)
            args = _drop_full_mask(args)
            if dynamic == "mark":
                real = isinstance(getattr(_block.attention, "processor", None), FusedZImageAttnProcessor)
                args = _prepare_dynamic(args, kwargs, real)
            return _compiled(*args, **kwargs)

        block._zx_eager = eager
        block.forward = forward
        count += 1
    return count


def _drop_full_mask(args: tuple) -> tuple:
    """A single image's attention mask is all True: pass None, as the transformer itself does.

    The ControlNet always builds a mask, even for one image; given to the shared refiner blocks it
    would trace a second graph of them, and it sends the fused attention off its cuDNN kernel.
    """
    if len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].dtype == torch.bool and args[1].shape[0] == 1:
        return (args[0], None, *args[2:])
    return args


def _control_core(block_forward: Callable) -> Callable:
    """A control block's transformer part (diffusers' own block maths, given as a plain function: the
    class is allowed in graph, so dynamo would not trace its method) and the projected hint."""

    def core(block: Any, c: torch.Tensor, attn_mask: torch.Tensor | None, freqs_cis: torch.Tensor,
             adaln_input: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        c = block_forward(block, c, attn_mask, freqs_cis, adaln_input)
        return block.after_proj(c), c

    return core


def compile_control_blocks(controlnet: Any, switch: CompileSwitch, *, mode: str | None = None) -> int:
    """Regionally compile a Z-Image ControlNet's control blocks; returns how many were wrapped.

    A control block takes the hints made so far stacked in one tensor, runs the last through attention
    and feed-forward, and stacks its projected hint and its result on top: the stack grows block by
    block, so compiling the whole forward would trace one graph per depth (past dynamo's recompile
    limit, then eager). Only the middle part is compiled: one graph for every control block, sequence
    length dynamic as in `compile_blocks`. The stack around it is kept in one buffer sized for the
    whole chain of blocks (`_grow`), not copied whole at every block. Blocks of the older layout that
    are plain transformer blocks go through `compile_blocks`.
    """
    from diffusers.models.controlnets.controlnet_z_image import ZImageTransformerBlock

    compiled = torch.compile(_control_core(ZImageTransformerBlock.forward), fullgraph=True, mode=mode,
                             backend=compile_backend(), dynamic=None)
    failed: list[str] = []  # a compile error turns them all back to eager for good (never a failed image)
    count = 0
    for name in ("control_noise_refiner", "control_layers"):
        chain = list(getattr(controlnet, name, None) or [])
        for pos, block in enumerate(chain):
            if type(block).__name__ != "ZImageControlTransformerBlock" or hasattr(block, "_zx_eager"):
                continue
            eager = block.forward

            def forward(c: torch.Tensor, x: torch.Tensor, attn_mask: torch.Tensor | None, freqs_cis: torch.Tensor,
                        adaln_input: torch.Tensor | None = None, _eager: Callable = eager, _block: Any = block,
                        _pos: int = pos, _depth: int = len(chain)) -> torch.Tensor:
                if failed or (not switch.ready and not getattr(_tls, "warming", False)):
                    return _eager(c, x, attn_mask, freqs_cis, adaln_input)
                if _block.block_id == 0:  # diffusers' own test for the first block of a chain
                    stack, h = None, _block.before_proj(c) + x
                else:
                    stack, h = c, c[-1]
                real = isinstance(getattr(_block.attention, "processor", None), FusedZImageAttnProcessor)
                args = _prepare_dynamic(_drop_full_mask((h, attn_mask, freqs_cis, adaln_input)), {}, real)
                try:
                    hint, h = compiled(_block, *args)
                except Exception as exc:  # noqa: BLE001 - compile is an optimisation; nothing was written yet
                    failed.append(f"{type(exc).__name__}: {exc}"[:300])
                    warnings.warn(f"ControlNet blocks stay eager: compile failed: {failed[0]}", stacklevel=2)
                    return _eager(c, x, attn_mask, freqs_cis, adaln_input)
                return _grow(stack, hint, h, _pos, _depth)

            block._zx_eager = eager
            block.forward = forward
            count += 1
    return count + compile_blocks(controlnet, switch, mode=mode)


def _grow(stack: torch.Tensor | None, hint: torch.Tensor, c: torch.Tensor, pos: int, depth: int) -> torch.Tensor:
    """`stack` with its last entry replaced by `hint` and `c` put on top (diffusers' `torch.stack`).

    The first block of a chain of `depth` allocates room for all of them (depth hints and the last
    result); later blocks get views of it and write their two entries in place, instead of copying
    the whole growing stack (15 blocks at 1024x1024: 4 GB written per step). Its last entry is the
    block's input, already read by the compiled part. Anything else falls back to a new stack."""
    if stack is None and pos == 0:
        buf = hint.new_empty((depth + 1, *hint.shape))
    else:
        buf = stack._base if stack is not None else None
        if (buf is None or stack.shape[0] != pos + 1 or buf.shape[0] != depth + 1 or buf.shape[1:] != stack.shape[1:]
                or stack.data_ptr() != buf.data_ptr() or not stack.is_contiguous()):
            return torch.stack([*(stack.unbind(0)[:-1] if stack is not None else ()), hint, c])
    buf[pos].copy_(hint)
    buf[pos + 1].copy_(c)
    return buf[:pos + 2]


_tls = threading.local()


def compile_vae_decoder(vae: Any, switch: CompileSwitch) -> bool:
    """Compile the VAE decoder with height and width dynamic (one graph for every image size).

    Tiled decodes (large images under a memory budget) stay eager: their tiles are shapes the warm-up
    never saw, and compiling them cost a person's first 2048x2048 image 18-35 s on H100.
    """
    dec = vae.decoder
    if hasattr(dec, "_zx_eager"):
        return False
    eager = dec.forward
    compiled = torch.compile(eager, fullgraph=False, dynamic=None, backend=compile_backend())

    def forward(z: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if (not switch.ready and not getattr(_tls, "warming", False)) or getattr(vae, "use_tiling", False):
            return eager(z, *args, **kwargs)
        torch._dynamo.maybe_mark_dynamic(z, 2)
        torch._dynamo.maybe_mark_dynamic(z, 3)
        return compiled(z, *args, **kwargs)

    dec._zx_eager = eager
    dec.forward = forward
    return True


def uncompile_blocks(transformer: Any) -> int:
    """Put the eager forwards back (before re-compiling with other settings in the same process).

    Works on any module tree wrapped here: the transformer, the text encoder, the VAE.
    """
    count = 0
    for block in transformer.modules():
        if hasattr(block, "_zx_eager"):
            block.__dict__.pop("forward", None)  # back to the class's own forward
            del block._zx_eager
            count += 1
    return count


class warming:
    """Context in which the current thread uses the compiled blocks even before the switch is ready."""

    def __enter__(self) -> None:
        _tls.warming = True

    def __exit__(self, *exc: object) -> None:
        _tls.warming = False
