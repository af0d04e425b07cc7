"""``model.init_from``: start a network from weights in a file, the way the papers did.

Three sources are understood, each read with ``classicnets.run.safe_load.load_file``
(``weights_only=True``, so a file that carries code is refused before anything in it runs):

- a checkpoint of ours of the same network: every tensor is copied; trained on another number of
  classes, every tensor but the classifier's, which keeps its own initialisation (fine-tuning:
  AlexNet §6 pre-trains on the 21,841 classes of ImageNet Fall 2011, then fine-tunes on the
  1,000 of ILSVRC-2012), and a warning names the classifier;
- a checkpoint of ours of VGG configuration A for VGG-13/16/19: the paper's rule (Simonyan &
  Zisserman §3.1, "we initialised the first four convolutional layers and the last three
  fully-connected layers with the layers of net A"), see ``vgg.config_a_layers``;
- a torchvision-layout ``state_dict`` (``torch.save(model.state_dict(), PATH)``) for a network
  with a torchvision twin: loaded by name, our twins share torchvision's module names.

Every tensor that is copied must have the shape of the one it replaces; a mismatch (another
width, another ``num_classes`` in a file that does not say its classes) is an error that names
the tensor, never a silent partial load.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from classicnets.models.registry import model_info
from classicnets.models.vgg import VGG, config_a_layers
from classicnets.run.safe_load import load_file

log = logging.getLogger(__name__)

VGG_A = "vgg11"  # the net the paper trains first, from scratch (§3.1)
VGG_DEEPER = ("vgg13", "vgg16", "vgg19")  # B, D, E: the nets §3.1 starts from net A


class InitFromError(ValueError):
    """An ``init_from`` file that does not fit the network being built."""


def init_from(net: nn.Module, name: str, path: str | Path) -> int:
    """Copy weights from ``path`` into ``net`` (the registered network ``name``); returns the
    number of tensors copied and logs one line saying what came from where."""
    source_name, state = _read(path, name)
    if source_name == name:
        mapping = {key: key for key in net.state_dict()}
        rule = f"all of {name}"
        source_classes = _classes(path)
        prefix, classifier = _classifier(net)
        source_outputs = state.get(f"{prefix}.weight", torch.empty(0)).shape[:1]
        if source_outputs == (source_classes,) and source_classes != classifier.out_features:
            mapping = {k: v for k, v in mapping.items() if not k.startswith(f"{prefix}.")}
            rule = f"all of {name} but its classifier {prefix}"
            log.warning(
                "init_from: %s was trained on %d classes, this network has %d: %s starts from its "
                "own initialisation (fine-tuning)", path, source_classes,
                classifier.out_features, prefix,
            )  # fmt: skip
    elif source_name == VGG_A and name in VGG_DEEPER and isinstance(net, VGG):
        mapping = _config_a_mapping(net)
        rule = f"VGG §3.1: net A's first four convs and three FCs into {name}"
    else:
        raise InitFromError(
            f"init_from: {path} holds a {source_name}, which does not initialise a {name}; pass "
            f"a checkpoint of a {name}"
            + (f" or of a {VGG_A} (VGG §3.1)" if name in VGG_DEEPER else "")
        )
    copied = _copy(net, state, mapping, path)
    log.info("init_from: copied %d tensors (%s) from %s", copied, rule, path)
    return copied


def _read(path: str | Path, name: str) -> tuple[str, dict[str, Tensor]]:
    """(the source network's registry name, its state_dict without the ``net.`` prefix)."""
    content = load_file(path)
    if not isinstance(content, Mapping):
        raise InitFromError(f"init_from: {path} holds a {type(content).__name__}, not weights")
    if "state_dict" in content:  # one of our checkpoints: the LightningModule's state
        try:
            source_name = content["hyper_parameters"]["net"]["name"]
        except (KeyError, TypeError):
            raise InitFromError(
                f"init_from: {path} has a state_dict but no hyper_parameters.net.name, so it is "
                "not a checkpoint of ours; save the network's own state_dict instead"
            ) from None
        state = content["state_dict"]
        return source_name, {k.removeprefix("net."): v for k, v in state.items() if k[:4] == "net."}
    if not all(isinstance(v, Tensor) for v in content.values()):
        raise InitFromError(f"init_from: {path} is neither a checkpoint of ours nor a state_dict")
    twin = model_info(name).torchvision_twin
    if twin is None:
        raise InitFromError(
            f"init_from: {path} is a plain state_dict, which only networks with a torchvision "
            f"twin read; {name} has none: pass a checkpoint of ours"
        )
    return name, dict(content)  # a twin's names are ours


def _classes(path: str | Path) -> int | None:
    """The number of classes a checkpoint of ours was trained on; None for a plain state_dict."""
    content = load_file(path)
    try:
        return int(content["hyper_parameters"]["num_classes"])
    except (KeyError, TypeError, ValueError):
        return None


def _classifier(net: nn.Module) -> tuple[str, nn.Linear]:
    """The network's last fully-connected layer and its name (the classifier, where its outputs
    are the classes)."""
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]


def _config_a_mapping(net: VGG) -> dict[str, str]:
    """Target state_dict key → net A key for the §3.1 layers."""
    return {
        f"{dst}.{tensor}": f"{src}.{tensor}"
        for src, dst in config_a_layers(net)
        for tensor in ("weight", "bias")
    }


def _copy(
    net: nn.Module, state: Mapping[str, Tensor], mapping: Mapping[str, str], path: str | Path
) -> int:
    """Copy ``state[mapping[key]]`` into ``net``'s ``key`` for every key; all or nothing."""
    own = net.state_dict()
    missing = sorted(src for src in mapping.values() if src not in state)
    if missing:
        raise InitFromError(
            f"init_from: {path} lacks {len(missing)} of the tensors to copy (first: "
            f"{missing[0]}); is it a checkpoint of this network?"
        )
    for dst, src in mapping.items():
        if state[src].shape != own[dst].shape:
            raise InitFromError(
                f"init_from: {src} in {path} has shape {tuple(state[src].shape)}, this network's "
                f"{dst} {tuple(own[dst].shape)}; build the network as the source was built "
                "(model.net.num_classes follows the data: use data of the same classes)"
            )
    with torch.no_grad():
        for dst, src in mapping.items():
            own[dst].copy_(state[src])
    return len(mapping)
