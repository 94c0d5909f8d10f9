"""Version-portable calls into Hugging Face causal LMs (transformers 4.5x and 5.x).

transformers 5.x renamed the ``past_key_values`` argument and output to ``cache``; 4.5x only
knows ``past_key_values``. Everything here goes through stable names: ``inputs_embeds``,
``attention_mask``, ``position_ids``, ``use_cache``, ``labels`` and the cache argument under
whichever name the model's ``forward`` declares.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn

_CLASS_PARAMETERS: dict[type[nn.Module], frozenset[str]] = {}


def forward_parameters(module: nn.Module) -> frozenset[str]:
    """Names ``module.forward`` takes (cached per class: ``inspect.signature`` is slow next to
    a small LM step; an instance-level ``forward``, e.g. an accelerate hook, is read each time).
    """
    if "forward" in vars(module):
        return frozenset(inspect.signature(module.forward).parameters)
    cls = type(module)
    if cls not in _CLASS_PARAMETERS:
        _CLASS_PARAMETERS[cls] = frozenset(inspect.signature(module.forward).parameters)
    return _CLASS_PARAMETERS[cls]


def cache_argument(module: nn.Module) -> str:
    """``"cache"`` (transformers >= 5) or ``"past_key_values"``: the name ``module.forward``
    takes its KV cache under."""
    return "cache" if "cache" in forward_parameters(module) else "past_key_values"


def call_lm(
    lm: nn.Module,
    inputs_embeds: Tensor,
    attention_mask: Tensor,
    position_ids: Tensor | None = None,
    cache: Any = None,
    use_cache: bool = False,
    labels: Tensor | None = None,
    logits_to_keep: int | None = None,
) -> Any:
    """Run a causal LM on embeddings; returns its output (``.logits``, ``.loss``, cache).

    ``logits_to_keep`` is passed on only when the LM's ``forward`` takes it (the caller slices
    the last positions itself either way).
    """
    kwargs: dict[str, Any] = {
        "inputs_embeds": inputs_embeds,
        "attention_mask": attention_mask,
        "use_cache": use_cache,
    }
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    if labels is not None:
        kwargs["labels"] = labels
    if cache is not None:
        kwargs[cache_argument(lm)] = cache
    if logits_to_keep is not None and "logits_to_keep" in forward_parameters(lm):
        kwargs["logits_to_keep"] = logits_to_keep
    return lm(**kwargs)


def output_cache(output: Any) -> Any:
    """The KV cache of an LM output under the name its class declares (``cache`` in
    transformers >= 5, where ``past_key_values`` is a deprecated alias that warns on every
    read; ``past_key_values`` before)."""
    fields = getattr(output, "__dataclass_fields__", {})
    return getattr(output, "cache" if "cache" in fields else "past_key_values", None)


def input_embeddings(lm: nn.Module) -> nn.Module:
    """``lm.get_input_embeddings()``, with a TypeError when the LM has none."""
    getter = getattr(lm, "get_input_embeddings", None)
    if getter is None:
        raise TypeError(
            f"language_model: expected a Hugging Face causal LM with get_input_embeddings(), "
            f"got {type(lm).__name__}"
        )
    embeddings = getter()
    if not isinstance(embeddings, nn.Module):
        raise TypeError("language_model: get_input_embeddings() returned no module")
    return embeddings


def hidden_size(lm: nn.Module) -> int:
    """Embedding width of the LM's input embeddings."""
    embeddings = input_embeddings(lm)
    weight = getattr(embeddings, "weight", None)
    if not isinstance(weight, Tensor):
        raise TypeError("language_model: its input embeddings have no weight tensor")
    return int(weight.shape[-1])
