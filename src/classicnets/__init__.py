"""classicnets: the classic ImageNet CNNs, trained exactly as their papers did."""

__version__ = "0.1.0"
