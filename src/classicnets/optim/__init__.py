"""Optimizers and learning-rate schedules that torch does not ship, and the one function that
builds a run's optimizer and schedule from its recipe and size."""

from classicnets.optim.build import OptimizerRecipe, RunSize, build_optimization
from classicnets.optim.multipliers import sgd_with_spared_lr_mult
from classicnets.optim.schedules import LinearDecayLR, PassWiseLR, PlateauLR
from classicnets.optim.sdlm import SDLM, diagonal_gauss_newton

__all__ = [
    "SDLM",
    "LinearDecayLR",
    "OptimizerRecipe",
    "PassWiseLR",
    "PlateauLR",
    "RunSize",
    "build_optimization",
    "diagonal_gauss_newton",
    "sgd_with_spared_lr_mult",
]
