"""Which model a cluster node loads: machines share no disk, so each node finds its own copy.

The parent's path is used where it holds the same model on this node too (the same Hugging Face cache
layout, a path shared by a network folder); else this node's own discovery must find a model of the
same name. The demo model is built from the package on any node. A node with none says so in one
line, which the monitor shows, instead of taking jobs it would fail. A job's ControlNet is found the
same way: by the studio's path where it exists here, else by its name in this node's folders.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RANDOM_PREFIX = "random:"  # the worker builds random weights itself (pool/worker.py): nothing to find


@dataclass(frozen=True)
class NodeModel:
    """The model path on this node, or None and the sentence that says why."""

    path: str | None
    message: str = ""


def resolve_here(model_path: str, model_name: str) -> NodeModel:
    """The path of the model named `model_name` (the parent has it at `model_path`) on this node."""
    from studio.models.discovery import find_models, inspect_folder

    if model_path.startswith(RANDOM_PREFIX):
        return NodeModel(model_path)
    if model_name == "demo":
        from studio.models.demo import ensure_demo_model

        return NodeModel(str(ensure_demo_model()))
    same = inspect_folder(Path(model_path), "explicit") if Path(model_path).is_dir() else None
    if same is not None and same.complete:
        return NodeModel(model_path)
    for info in find_models(include_demo=False):
        if info.complete and info.name == model_name:
            return NodeModel(info.path)
    return NodeModel(None, f"No model {model_name} on {socket.gethostname()}: download it there "
                           f"(zaoxiang models download) or put it at {model_path}.")


def controlnet_here(job: dict[str, Any]) -> dict[str, Any]:
    """`job` (as plain data) with its ControlNet named so that this node finds its own copy: the
    studio's path where it exists here too, else the file or folder name, which the worker looks up
    in this node's ControlNet folders (and names in one line when it is not there)."""
    spec = job.get("spec") or {}
    control = spec.get("control")
    if not isinstance(control, dict) or not control.get("model"):
        return job
    path = Path(str(control["model"])).expanduser()
    if path.exists():
        return job
    name = path.name[: -len(".safetensors")] if path.name.lower().endswith(".safetensors") else path.name
    return {**job, "spec": {**spec, "control": {**control, "model": name}}}
