"""The optimisation loop shared by the lifter's and the prior's training: AdamW, a linear
warm-up then a cosine decay of the learning rate, gradient clipping, an optional exponential
moving average of the weights (EMA), and the state a resumed run continues from."""

from __future__ import annotations

import copy
import math

import torch


def lr_at(step: int, total: int | None, peak: float, warmup: int) -> float:
    """Learning rate at `step`: linear warm-up over `warmup` steps to `peak`, then a cosine
    decay to 0 at `total` (held at 0 beyond it); constant `peak` when `total` is None."""
    if total is None:
        return peak
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


class Optimiser:
    """AdamW over `model` on the warm-up + cosine schedule; `update(loss)` is one step.

    `ema` > 0 keeps an average of the weights (decay `ema`, warmed up as (1 + step) /
    (10 + step) so that the first steps are not averaged with the initial weights);
    `averaged` is the module to save.
    """

    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float = 0.0,
                 warmup: int = 0, total: int | None = None, clip: float = 1.0, ema: float = 0.0):
        if not 0 <= ema < 1:
            raise ValueError(f"the EMA decay must be in [0, 1), got {ema}")
        self.model, self.peak, self.warmup, self.total, self.clip = model, lr, warmup, total, clip
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.ema_decay = ema
        self.ema = copy.deepcopy(model).requires_grad_(False) if ema > 0 else None
        self.step = 0

    @property
    def lr(self) -> float:
        return lr_at(self.step, self.total, self.peak, self.warmup)

    @property
    def averaged(self) -> torch.nn.Module:
        return self.ema if self.ema is not None else self.model

    def update(self, loss: torch.Tensor) -> None:
        for group in self.opt.param_groups:
            group["lr"] = self.lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        if self.ema is not None:
            with torch.no_grad():
                d = min(self.ema_decay, (1 + self.step) / (10 + self.step))
                for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                    pe.lerp_(pm, 1 - d)
        self.step += 1

    def state_dict(self) -> dict:
        return {"optimizer": self.opt.state_dict(), "step": self.step,
                "ema": None if self.ema is None else self.ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
