"""Saving what pyrtok owns in a VLM wrapper: configuration (JSON) and weights (safetensors).

The Hugging Face models inside are saved by their own ``save_pretrained``; pyrtok writes its
configuration and the state of the modules it owns (projector, quantizer): tensors to
``pyrtok_weights.safetensors``, plain extra state (e.g. a quantizer's flags) into the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

CONFIG_NAME = "pyrtok_config.json"
WEIGHTS_NAME = "pyrtok_weights.safetensors"

Parts = Mapping[str, nn.Module | None]
"""The modules pyrtok owns, by name (``None`` where absent)."""


def owned_state(parts: Parts) -> dict[str, Any]:
    """``"name.key" -> value`` of every present part's ``state_dict``, tensors on the CPU."""
    state = {
        f"{name}.{key}": value
        for name, part in parts.items()
        if part is not None
        for key, value in part.state_dict().items()
    }
    return {
        k: v.detach().contiguous().cpu() if isinstance(v, Tensor) else v for k, v in state.items()
    }


def write_pretrained(directory: str | Path, config: dict[str, Any], parts: Parts) -> None:
    """Write ``config`` plus the parts' extra state as JSON, and their tensors as safetensors."""
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    state = owned_state(parts)
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    extra = {k: v for k, v in state.items() if k not in tensors}
    (path / CONFIG_NAME).write_text(json.dumps(config | {"extra_state": extra}, indent=2) + "\n")
    save_file(tensors, str(path / WEIGHTS_NAME))


def read_pretrained(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saved configuration and the saved state (tensors and extra state together)."""
    from safetensors.torch import load_file

    path = Path(directory)
    config = json.loads((path / CONFIG_NAME).read_text())
    extra: dict[str, Any] = config.pop("extra_state", {})
    return config, load_file(str(path / WEIGHTS_NAME)) | extra


def load_owned_state(parts: Parts, state: Mapping[str, Any]) -> None:
    """Load each present part's entries of ``state`` (strictly: every key must match)."""
    for name, part in parts.items():
        prefix = f"{name}."
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if part is not None:
            part.load_state_dict(own)
