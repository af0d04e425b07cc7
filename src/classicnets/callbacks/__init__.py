"""Recipe behaviour that is not a loss: weight renormalisation, weight averaging, BN statistics
recomputed after training, curvature; and watching a network learn (the first layer's filters)."""

from classicnets.callbacks.filter_grid import FilterGrid
from classicnets.callbacks.filter_renorm import FilterRenorm, renorm_filters_
from classicnets.callbacks.polyak import PolyakAveraging
from classicnets.callbacks.recompute_bn import RecomputeBatchNorm, recompute_bn_statistics
from classicnets.callbacks.sdlm_curvature import SDLMCurvature

__all__ = [
    "FilterGrid", "FilterRenorm", "PolyakAveraging", "RecomputeBatchNorm", "SDLMCurvature",
    "recompute_bn_statistics", "renorm_filters_",
]  # fmt: skip
