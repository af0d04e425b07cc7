"""Learning-rate schedules that torch does not ship."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiplicativeLR, PolynomialLR, ReduceLROnPlateau


class PassWiseLR(MultiplicativeLR):
    """A piecewise-constant rate from a table of ``(first pass, rate)`` rows, passes counted from 1
    (LeNet-5, LeCun et al. 1998 section III.A: 5e-4 for passes 1-2, 2e-4 for 3-5, ...).

    The table gives the schedule's shape: the optimizer's own LR is multiplied by
    ``rate / first rate``, so the linear scaling rule still applies on top. The factor is applied
    as a ratio at each change of pass, like torch's MultiStepLR, so the schedule chains with others
    (the module's step-wise warm-up) instead of overwriting their rate."""

    def __init__(self, optimizer: Optimizer, table: Sequence[Sequence[float]]) -> None:
        rows = sorted((int(first), float(rate)) for first, rate in table)
        if not rows or rows[0][0] != 1:
            raise ValueError(f"the rate table must start at pass 1, got {table}")
        self.table = rows

        def rate(epoch: int) -> float:  # Lightning counts epochs from 0, the paper from 1
            return next(rate for first, rate in reversed(rows) if epoch + 1 >= first)

        super().__init__(optimizer, lambda epoch: rate(epoch) / rate(epoch - 1))


class PlateauLR(ReduceLROnPlateau):
    """``ReduceLROnPlateau`` that divides the rate at most ``max_reductions`` times, as the papers
    that annealed by hand did (AlexNet section 5: "reduced three times prior to termination";
    VGG section 3.1: "decreased 3 times"); afterwards the rate stays until the run ends.

    The count is part of ``state_dict``, so a resumed run does not reduce again."""

    def __init__(self, optimizer: Optimizer, *, max_reductions: int, **kwargs: Any) -> None:
        if max_reductions < 0:
            raise ValueError(f"max_reductions must be >= 0, got {max_reductions}")
        super().__init__(optimizer, **kwargs)
        self.max_reductions = max_reductions
        self.reductions = 0
        self._hold_if_done()

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        before = [float(group["lr"]) for group in self.optimizer.param_groups]
        super().step(metrics, epoch)
        after = [float(group["lr"]) for group in self.optimizer.param_groups]
        if any(new < old for new, old in zip(after, before, strict=True)):
            self.reductions += 1
            self._hold_if_done()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._hold_if_done()

    def _hold_if_done(self) -> None:
        """After the last allowed reduction the plateau rule divides by 1: the rate stays, and
        the patience and cooldown bookkeeping goes on as torch keeps it."""
        if self.reductions >= self.max_reductions:
            self.factor = 1.0


class LinearDecayLR(PolynomialLR):
    """The rate falls linearly from the optimizer's to 0 over ``total_steps`` scheduler steps
    (ShuffleNet v1 section 4: "linearly-decaying learning rate policy (decreased from 0.5 to 0)").

    ``total_steps`` is the run's length, not the paper's: training passes the run's optimizer
    updates to any scheduler that takes ``total_steps`` (``optim/build.py``), so the schedule
    keeps its shape at any batch size and epoch count."""

    def __init__(self, optimizer: Optimizer, total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        super().__init__(optimizer, total_iters=total_steps, power=1.0)
        self.total_steps = total_steps
