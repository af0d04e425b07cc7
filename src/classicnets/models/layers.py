"""A network's layer by name, as the study commands and callbacks take it (``layer=conv1``)."""

from __future__ import annotations

from torch import nn

from classicnets.run.checks import ConfigValueError


def find_layer(
    net: nn.Module, name: str, kind: type[nn.Module] = nn.Module, *, key: str = "layer"
) -> tuple[str, nn.Module]:
    """(path, module) of the ``kind`` module at path ``name`` (``features.conv1``), else the
    first whose path ends in it (``conv1``); an unknown name is a :class:`ConfigValueError` of
    config ``key`` that lists the network's first layers of that kind."""
    layers = [(path, m) for path, m in net.named_modules() if path and isinstance(m, kind)]
    exact = [(path, m) for path, m in layers if path == name]
    found = exact or [(path, m) for path, m in layers if path.split(".")[-1] == name]
    if not found:
        what = "layers" if kind is nn.Module else f"{kind.__name__} layers"
        first = ", ".join(path for path, _ in layers[:8]) or "none"
        raise ConfigValueError(key, name, f"the network's first {what} are: {first}")
    return found[0]
