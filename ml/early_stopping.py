"""Early stopping for the torch training loops: keep the best epoch's weights, stop when stale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Remembers the weights of the best epoch and says when ``patience`` epochs brought nothing.

    ``better(new, best)`` decides whether an epoch's score beats the best so far (default: higher
    is better; scores may be tuples, compared in order).
    """

    def __init__(self, patience: int, *, better: Callable[[Any, Any], bool] = lambda new, best: new > best) -> None:
        self.patience = int(patience)
        self.better = better
        self.best: Any = None
        self.stale = 0
        self._state: dict[str, torch.Tensor] | None = None

    def update(self, model: torch.nn.Module, score: Any) -> bool:
        """Record this epoch's ``score``; True when training should stop."""
        if self.best is None or self.better(score, self.best):
            self.best, self.stale = score, 0
            self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self, model: torch.nn.Module) -> torch.nn.Module:
        """Load the best epoch's weights back into ``model`` (a no-op before any update)."""
        if self._state is not None:
            model.load_state_dict(self._state)
        return model
