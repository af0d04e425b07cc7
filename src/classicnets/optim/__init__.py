"""Optimizers and learning-rate schedules that torch does not ship."""

from classicnets.optim.schedules import PassWiseLR
from classicnets.optim.sdlm import SDLM, diagonal_gauss_newton

__all__ = ["SDLM", "PassWiseLR", "diagonal_gauss_newton"]
