"""The model zoo. Importing this package registers every architecture family."""

from classicnets.models import (
    alexnet,  # noqa: F401
    googlenet,  # noqa: F401
    lenet,  # noqa: F401  (registers its builders)
    mobilenet,  # noqa: F401
    preact_resnet,  # noqa: F401
    resnet,  # noqa: F401
    shufflenet,  # noqa: F401
    vgg,  # noqa: F401
    zfnet,  # noqa: F401
)
from classicnets.models.registry import (
    ModelInfo,
    get_model,
    list_models,
    model_info,
    register_model,
)

__all__ = ["ModelInfo", "get_model", "list_models", "model_info", "register_model"]
