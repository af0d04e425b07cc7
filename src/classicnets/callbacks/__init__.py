"""Recipe behaviour that is not a loss: weight renormalisation, weight averaging."""

from classicnets.callbacks.filter_renorm import FilterRenorm, renorm_filters_
from classicnets.callbacks.polyak import PolyakAveraging

__all__ = ["FilterRenorm", "PolyakAveraging", "renorm_filters_"]
