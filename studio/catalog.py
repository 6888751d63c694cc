"""What this computer offers a Studio: models, LoRAs, ControlNets and GPUs, found without torch.

A mixin of `Studio` (app.py), so the facade's callers ask `studio.available_models()` and friends
while the facade itself stays about running requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.request import GenerationRequest, LoraCheck, ValidationError
from studio.models.discovery import ModelInfo, find_models
from studio.models.download import DEFAULT_REPO, download_model
from studio.models.loras import LoraInfo, find_loras, lora_dirs
from studio.models.loras import checker as lora_checker
from studio.pool.spec import visible_gpus

if TYPE_CHECKING:
    from studio.core.paths import Paths
    from studio.core.settings import Settings
    from studio.models.controlnets import ControlNetInfo
    from studio.models.download import Progress


class ModelCatalog:
    """Queries over what is installed; needs `paths`, `settings`, `model` and `_model_arg` from the Studio."""

    paths: Paths
    settings: Settings
    model: ModelInfo
    _model_arg: str | None

    def available_models(self, include_demo: bool = False) -> list[ModelInfo]:
        """Every model found on this computer, in the order the studio would choose them."""
        return find_models(explicit=self._model_arg, configured=self.settings.model or None, paths=self.paths,
                           include_demo=include_demo)

    def available_loras(self) -> list[LoraInfo]:
        """Every LoRA in this studio's `loras` folder and ComfyUI's `models/loras`, described from its header."""
        return find_loras(lora_dirs(self.paths))

    def lora_check(self, paths: bool = False) -> LoraCheck:
        """What validation checks each LoRA of a request with: found (by name in those folders, a path
        inside them, or with `paths`, which only the CLI passes, any path), a LoRA .safetensors file,
        made for this studio's model."""
        return lora_checker(self.model.path, lora_dirs(self.paths), paths=paths)

    @staticmethod
    def gpu_count() -> int:
        """The GPUs this process may give workers (NVML; 0 without a driver), never importing torch."""
        return len(visible_gpus())

    @staticmethod
    def download_model(source: str, repo: str | None, folder: str | None = None, revision: str = "main",
                       configs_only: bool = False, progress: Callable[[Progress], None] | None = None) -> Path:
        """Download a model once (resumable, checked against the hub); DownloadError says what to do next."""
        return Path(download_model(source, repo or DEFAULT_REPO, folder, revision, configs_only, progress=progress))

    @staticmethod
    def download_lora(source: str, repo: str, revision: str = "main",
                      progress: Callable[[Progress], None] | None = None) -> list[LoraInfo]:
        """Download a LoRA repo's .safetensors files into the data dir's `loras` folder; DownloadError: one line."""
        from studio.core.paths import get_paths
        from studio.models.lora_download import download_lora

        return download_lora(source, repo, get_paths().loras_dir, revision, progress=progress)

    def available_controlnets(self) -> list[ControlNetInfo]:
        """The ControlNets that fit this studio's model: its ControlNet folders, ComfyUI's, and the demo
        one while the demo model is in use (what the window's ControlNet chooser lists)."""
        from studio.models.controlnets import controlnet_dirs, demo_controlnet, find_controlnets, fits
        from studio.models.controlnets import transformer_config as read_config

        config = read_config(self.model.path) or {}
        demo = demo_controlnet() if self.model.is_demo else None
        dirs = controlnet_dirs(self.paths) + ([demo.parent] if demo else [])
        found = find_controlnets(dirs, int(config.get("n_layers", 30)))
        return [info for info in found if not config or fits(info, config) is None]

    def _with_controlnet(self, request: GenerationRequest, paths: bool = False) -> GenerationRequest:
        """The request with its ControlNet found and checked against the model (ValidationError if not);
        `paths` as for `lora_check`."""
        if request.control is None:
            return request
        from studio.models.controlnets import ControlNetError, for_model, takes_mask, transformer_config

        try:
            info = for_model(request.control.model, self.model.path, self.model.is_demo, paths=paths)
        except ControlNetError as exc:
            raise ValidationError("control_model", str(exc), got=request.control.model) from None
        if request.mask and not takes_mask(info.config, transformer_config(self.model.path) or {}):
            raise ValidationError("control_model", f"ControlNet {info.name} takes no mask (the Union 1.0 layout): "
                                  "paint with a Union 2.0 or later ControlNet, or leave the mask out.",
                                  kind="nomask", got=info.name)
        return replace(request, control=replace(request.control, model=info.path))
