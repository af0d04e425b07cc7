"""Recipe behaviour that is not a loss: filter renormalisation, weight averaging, curvature
estimates, batch-norm statistics recomputed after training."""

from classicnets.training.callbacks.filter_renorm import FilterRenorm, renorm_filters_
from classicnets.training.callbacks.polyak import PolyakAveraging
from classicnets.training.callbacks.recompute_bn import RecomputeBatchNorm, recompute_bn_statistics
from classicnets.training.callbacks.sdlm_curvature import SDLMCurvature

__all__ = [
    "FilterRenorm",
    "PolyakAveraging",
    "RecomputeBatchNorm",
    "SDLMCurvature",
    "recompute_bn_statistics",
    "renorm_filters_",
]
