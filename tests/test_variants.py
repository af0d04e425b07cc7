"""The seeds' experiments as switches: AlexNet's sixth convolutional layer (section 6) and its
middle layers removed (section 7), global average pooling in place of flattening, and init_from
starting a network from one trained on other classes (AlexNet §6's fine-tuning)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from classicnets.models import get_model
from classicnets.models.init_from import init_from
from classicnets.run.checkpoints import CONFIG_KEY
from classicnets.run.setup import compose_config
from classicnets.training.module import ClassificationModule

ALEXNET = 60_965_224  # the 2012 network (two GPU groups)
CONV6 = 256 * 256 * 9 + 256  # 256@3×3 over pool5's 256 maps
CONV2 = 256 * 48 * 25 + 256  # grouped: 48 input maps per group
CONV3 = 384 * 256 * 9 + 384
CONV4 = 384 * 192 * 9 + 384  # grouped: 192 input maps per group
FC6_FLAT, FC6_GAP = 256 * 6 * 6 * 4096, 256 * 4096  # weights only: the bias stays


def params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("switches", "expected"),
    [
        ({"conv6": True}, ALEXNET + CONV6),
        # Without conv2, conv3 reads conv1's 96 maps; without conv3, conv4 reads conv2's 256.
        ({"without": "conv2"}, ALEXNET - CONV2 - CONV3 + (384 * 96 * 9 + 384)),
        ({"without": "conv3"}, ALEXNET - CONV3 - CONV4 + (384 * 128 * 9 + 384)),
        ({"without": "conv4"}, ALEXNET - CONV4),
        ({"gap_head": True}, ALEXNET - FC6_FLAT + FC6_GAP),
        ({"conv6": True, "gap_head": True}, ALEXNET + CONV6 - FC6_FLAT + FC6_GAP),
    ],
)
def test_alexnet_variants_have_the_parameters_their_layers_imply(
    switches: dict, expected: int
) -> None:
    with torch.device("meta"):  # shapes only: nothing to initialise
        net = get_model("alexnet", **switches).eval()
        assert params(net) == expected
        assert net(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)


def test_conv6_sits_over_the_last_pooling_layer_with_the_hidden_layers_init() -> None:
    torch.manual_seed(0)
    features = get_model("alexnet", conv6=True).features
    names = list(features._modules)
    assert names[-3:] == ["pool5", "conv6", "act_conv6"]
    assert torch.all(features.conv6.bias == 1.0)  # as conv4 and conv5 (section 5)
    assert features.conv6.weight.std().item() == pytest.approx(0.01, rel=0.01)


def test_a_global_average_head_takes_any_input_size() -> None:
    """LeNet-5 keeps its 60,000 parameters (C5's maps are 1×1 at 32×32) and reads 48×48 digits;
    AlexNet reads 320×320 images; a network that does not flatten is refused."""
    lenet = get_model("lenet5", gap_head=True).eval()
    assert params(lenet) == 60_000
    with torch.no_grad():
        assert lenet(torch.zeros(2, 1, 48, 48)).shape == (2, 10)
        assert get_model("zfnet", gap_head=True).eval()(torch.zeros(1, 3, 320, 320)).shape == (
            1,
            1000,
        )
    with pytest.raises(ValueError, match=r"no nn\.Flatten"):
        get_model("resnet18", gap_head=True)


@pytest.mark.parametrize(
    ("experiment", "expected"),
    [
        ("alexnet_conv6", ALEXNET + CONV6),
        ("alexnet_without_conv3", ALEXNET - CONV3 - CONV4 + (384 * 128 * 9 + 384)),
        ("alexnet_gap_head", ALEXNET - FC6_FLAT + FC6_GAP),
        ("lenet5_gap_head", 60_000),
    ],
)
def test_each_experiment_builds_its_variant(experiment: str, expected: int, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"experiment={experiment}"], tmp_path)
    net = OmegaConf.to_container(cfg.model.net)
    with torch.device("meta"):
        assert params(get_model(net.pop("name"), **net)) == expected


def _checkpoint(module: ClassificationModule, path: Path) -> Path:
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            CONFIG_KEY: {},
        },
        path,
    )
    return path


def test_init_from_fine_tunes_a_network_trained_on_other_classes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """AlexNet §6: pre-trained on another class set, then fine-tuned: every tensor but the
    classifier's is copied, and the log says the classifier starts fresh."""
    torch.manual_seed(0)
    source = ClassificationModule(net={"name": "lenet5_modern"}, num_classes=21, in_channels=1)
    path = _checkpoint(source, tmp_path / "pretrained.ckpt")
    torch.manual_seed(1)
    fresh = get_model("lenet5_modern", num_classes=10, in_channels=1)
    before = fresh.classifier[-1].weight.clone()
    with caplog.at_level(logging.INFO, logger="classicnets.models.init_from"):
        copied = init_from(fresh, "lenet5_modern", path)
    assert copied == len(fresh.state_dict()) - 2  # all but classifier.5.weight and .bias
    for key, value in source.net.state_dict().items():
        if not key.startswith("classifier.5."):
            assert torch.equal(fresh.state_dict()[key], value), key
    assert torch.equal(fresh.classifier[-1].weight, before)
    assert "trained on 21 classes, this network has 10: classifier.5 starts" in caplog.text
