"""Optimizers and learning-rate schedules that torch does not ship."""

from classicnets.optim.multipliers import sgd_with_spared_lr_mult
from classicnets.optim.schedules import LinearDecayLR, PassWiseLR, PlateauLR
from classicnets.optim.sdlm import SDLM, diagonal_gauss_newton

__all__ = [
    "SDLM", "LinearDecayLR", "PassWiseLR", "PlateauLR", "diagonal_gauss_newton",
    "sgd_with_spared_lr_mult",
]  # fmt: skip
