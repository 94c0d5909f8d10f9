"""Confidence of a generated answer, in ``[0, 1]``, computed in float32.

Every function takes ``logits (B, T, V)`` (the distribution each answer token was chosen from),
``tokens (B, T)`` (the chosen tokens) and ``mask (B, T)`` (bool, False after the end of an
answer) and returns ``(B,)`` float32. A user callable with the same contract works everywhere
a name does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ConfidenceFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def first_token_prob(logits: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """Probability of the first answer token.

    Examples:
        >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
        >>> first_token_prob(logits, torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool))
        tensor([0.8808])
    """
    probs = torch.softmax(logits[:, 0].float(), dim=-1)
    return probs.gather(1, tokens[:, :1]).squeeze(1)


def mean_token_prob(logits: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """``exp(mean log p(token))`` over the answer's tokens (geometric-mean probability).

    Examples:
        >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
        >>> mean_token_prob(logits, torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool))
        tensor([0.6636])
    """
    logp = torch.log_softmax(logits.float(), dim=-1).gather(2, tokens[..., None]).squeeze(2)
    weight = mask.float()
    return torch.exp((logp * weight).sum(1) / weight.sum(1).clamp(min=1))


def margin(logits: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """Top-1 minus top-2 probability of the first answer token.

    Examples:
        >>> logits = torch.tensor([[[2.0, 0.0]]])
        >>> margin(logits, torch.tensor([[0]]), torch.ones(1, 1, dtype=torch.bool))
        tensor([0.7616])
    """
    top = torch.softmax(logits[:, 0].float(), dim=-1).topk(2, dim=-1).values
    return top[:, 0] - top[:, 1]


CONFIDENCES: dict[str, ConfidenceFn] = {
    "first_token": first_token_prob,
    "mean_logprob": mean_token_prob,
    "margin": margin,
}


FIRST_STEP_CONFIDENCES: frozenset[ConfidenceFn] = frozenset({first_token_prob, margin})
"""Confidences that read only the first answer step: with them, a level where no sample stops
skips decoding the rest of the answer (it would be thrown away)."""


def resolve_confidence(confidence: str | ConfidenceFn) -> ConfidenceFn:
    """A confidence function from its name (``"first_token"``, ``"mean_logprob"``,
    ``"margin"``) or a callable."""
    if callable(confidence):
        return confidence
    if confidence not in CONFIDENCES:
        raise ValueError(
            f"confidence: unknown name {confidence!r}; valid names are {list(CONFIDENCES)} or "
            f"a callable (logits, tokens, mask) -> (B,)"
        )
    return CONFIDENCES[confidence]
