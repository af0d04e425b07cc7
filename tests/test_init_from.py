"""``model.init_from``: which tensors come from the file, which stay as they were, and the files
that are refused (wrong network, wrong shape, code in the pickle)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from classicnets.models import get_model
from classicnets.models.init_from import InitFromError, init_from
from classicnets.run.checkpoints import CONFIG_KEY
from classicnets.run.setup import compose_config
from classicnets.training.module import ClassificationModule
from model_utils import small_vgg
from run_helpers import TINY, run_cli
from test_safe_load import assert_one_error_line, evil_checkpoint


def save_checkpoint(net: nn.Module, name: str, path: Path) -> Path:
    """What Lightning writes for our ClassificationModule: ``net.``-prefixed state, the module's
    hyperparameters and the run config."""
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    hparams = {"net": {"name": name}, "num_classes": 10, "in_channels": 3}
    torch.save({"state_dict": state, "hyper_parameters": hparams, CONFIG_KEY: {}}, path)
    return path


def test_vgg_d_starts_from_net_a_by_the_papers_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """§3.1: A's first four convs go to D's convs 1, 3, 5 and 6 (the first of stages 1 and 2, the
    first two of stage 3), A's three FCs to D's; D's other nine convs keep their own init."""
    torch.manual_seed(0)
    net_a, net_d = small_vgg("vgg11"), small_vgg("vgg16")
    path = save_checkpoint(net_a, "vgg11", tmp_path / "a.ckpt")
    before = {k: v.clone() for k, v in net_d.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="classicnets.models.init_from"):
        copied = init_from(net_d, "vgg16", path)
    assert copied == 2 * (4 + 3)  # weight and bias of 4 convs and 3 FCs
    convs_a = [m for m in net_a.features if isinstance(m, nn.Conv2d)]
    convs_d = [m for m in net_d.features if isinstance(m, nn.Conv2d)]
    for i_a, i_d in zip(range(4), (0, 2, 4, 5), strict=True):
        assert torch.equal(convs_d[i_d].weight, convs_a[i_a].weight)
        assert torch.equal(convs_d[i_d].bias, convs_a[i_a].bias)
    names = dict(net_d.features.named_children())
    untouched = [n for n, m in names.items() if isinstance(m, nn.Conv2d)]
    untouched = [n for i, n in enumerate(untouched) if i not in (0, 2, 4, 5)]
    assert len(untouched) == 9
    for n in untouched:
        assert torch.equal(
            net_d.state_dict()[f"features.{n}.weight"], before[f"features.{n}.weight"]
        )
    for index in (0, 3, 6):
        assert torch.equal(net_d.classifier[index].weight, net_a.classifier[index].weight)
    assert [r.getMessage() for r in caplog.records if r.name.endswith("init_from")] == [
        f"init_from: copied 14 tensors (VGG §3.1: net A's first four convs and three FCs into "
        f"vgg16) from {path}"
    ]


def test_a_checkpoint_of_the_same_network_is_copied_whole(tmp_path: Path) -> None:
    """Through the LightningModule, as ``model.init_from`` reaches it; eval rebuilds a module from
    its hyperparameters, so the file is not one of them."""
    torch.manual_seed(0)
    source = ClassificationModule(net={"name": "lenet5"}, num_classes=10, in_channels=1)
    state = source.state_dict()
    hparams = dict(source.hparams)
    path = tmp_path / "lenet.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": hparams, CONFIG_KEY: {}}, path)
    torch.manual_seed(1)
    fresh = ClassificationModule(net={"name": "lenet5"}, num_classes=10, in_channels=1)
    assert not torch.equal(fresh.net.c1.weight, source.net.c1.weight)
    module = ClassificationModule(
        net={"name": "lenet5"}, num_classes=10, in_channels=1, init_from=str(path)
    )
    for key, value in source.net.state_dict().items():
        assert torch.equal(module.net.state_dict()[key], value), key
    assert "init_from" not in module.hparams


def test_a_torchvision_state_dict_loads_into_the_twin_by_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    twin = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18_weights.pth"
    torch.save(twin.state_dict(), path)
    ours = get_model("resnet18")
    assert init_from(ours, "resnet18", path) == len(twin.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), twin.eval()(x), rtol=0, atol=0)


def test_other_class_count_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet18_weights.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    net = get_model("resnet18", num_classes=10)
    before = net.conv1.weight.clone()
    with pytest.raises(InitFromError, match=r"fc\.weight .* shape \(1000, 512\).* \(10, 512\)"):
        init_from(net, "resnet18", path)
    assert torch.equal(net.conv1.weight, before)  # all or nothing


def test_files_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    d_path = save_checkpoint(small_vgg("vgg16"), "vgg16", tmp_path / "d.ckpt")
    with pytest.raises(InitFromError, match=r"holds a vgg16.*not initialise a vgg19.*vgg11"):
        init_from(small_vgg("vgg19"), "vgg19", d_path)
    plain = tmp_path / "lenet_weights.pth"
    torch.save(get_model("lenet5").state_dict(), plain)
    with pytest.raises(InitFromError, match="lenet5 has none: pass a checkpoint of ours"):
        init_from(get_model("lenet5"), "lenet5", plain)


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    result = run_cli(
        "train",
        *TINY,
        "logger=none",
        f"++model.init_from={path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert_one_error_line(result, "evil.ckpt", "not a plain checkpoint")
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_torchvision_weights_file_is_evaluated_under_a_papers_protocol(
    fake_imagenet: Path, tmp_path: Path, train_main
) -> None:
    """``train=false`` with ``model.init_from`` scores a torchvision file under a test protocol:
    the validation loss is torchvision's own network's on the same batches."""
    import hydra

    reference = torchvision.models.resnet18(num_classes=4).eval()  # the fake tree's 4 classes
    weights = tmp_path / "resnet18_torchvision.pth"
    torch.save(reference.state_dict(), weights)
    overrides = [
        "model=resnet18",
        f"data.root={fake_imagenet}",
        f"model.init_from={weights}",
        "model.net.shortcut=B",  # torchvision's ResNet-18 projects (option B)
        "data.normalization=torchvision",
        "train=false",
        "data.test_protocol=ten_crop",
        "data.batch_size=2",
        "data.num_workers=0",
        "logger=none",
    ]
    cfg = compose_config("train", overrides, tmp_path / "run")
    train_main(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/ten_crop/acc_top1"] <= 1.0

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("validate")
    losses, count = 0.0, 0
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            images, targets = datamodule.on_after_batch_transfer(batch, 0)
            losses += nn.functional.cross_entropy(reference(images), targets, reduction="sum")
            count += len(targets)
    assert metrics["val/loss"] == pytest.approx(float(losses) / count, rel=1e-4)
