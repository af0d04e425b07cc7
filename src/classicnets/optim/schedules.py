"""Learning-rate schedules that torch does not ship."""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiplicativeLR


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
