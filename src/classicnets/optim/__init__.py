"""Optimizers and learning-rate schedules that torch does not ship."""

from classicnets.optim.schedules import LinearDecayLR, PassWiseLR, PlateauLR
from classicnets.optim.sdlm import SDLM, diagonal_gauss_newton

__all__ = ["SDLM", "LinearDecayLR", "PassWiseLR", "PlateauLR", "diagonal_gauss_newton"]
