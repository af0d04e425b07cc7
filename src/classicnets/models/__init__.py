"""The model zoo. Importing this package registers every architecture family."""

from classicnets.models import lenet  # noqa: F401  (registers its builders)
from classicnets.models.registry import ModelInfo, get_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "get_model", "list_models", "model_info", "register_model"]
