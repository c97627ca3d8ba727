"""An exponential moving average of a model's weights, for validation and export.

On 349 photos the validation mIoU of single epochs swings by several points: the weights after each
step chase the last batches. Averaging them over the last few hundred steps gives a smoother model
that usually scores at least as well as the best single epoch, without another training run.
"""

from __future__ import annotations

import copy

import torch


class WeightEMA:
    """A frozen copy of ``model`` whose weights and BatchNorm statistics track the model's.

    After each optimiser step, ``update`` moves every floating-point tensor a fraction ``1 - d``
    towards the model's, with ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates: early on
    the average follows the model closely, so the random start does not linger in it.
    Integer buffers (BatchNorm's batch counter) are copied.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must lie strictly between 0 and 1, not {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = self.current_decay()
        averaged, latest = [], []
        for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values()):
            if mine.is_floating_point():
                averaged.append(mine)
                latest.append(theirs.detach())
            else:
                mine.copy_(theirs)
        torch._foreach_lerp_(averaged, latest, 1.0 - decay)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
