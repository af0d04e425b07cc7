"""BN statistics recomputed with the final weights (ShuffleNet's official ``bn_process``): the
running mean and variance change to their plain mean over training batches, nothing else does,
for plain and Polyak-averaged weights, and the final checkpoint holds them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from classicnets.run.safe_load import load_file
from classicnets.run.setup import compose_config
from classicnets.training.callbacks import (
    PolyakAveraging,
    RecomputeBatchNorm,
    recompute_bn_statistics,
)

STATISTICS = ("running_mean", "running_var")


def _net() -> nn.Sequential:
    """BN straight on the input (its statistics do not depend on the weights), then a conv and
    another BN (whose statistics do)."""
    return nn.Sequential(
        nn.BatchNorm2d(3),
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )


def _images(n: int = 16, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g) * 2 + 1


def _batch_means(batches: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The plain mean over batches of each batch's channel mean and unbiased variance."""
    means = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    variances = torch.stack([b.transpose(0, 1).flatten(1).var(1) for b in batches]).mean(0)
    return means, variances


def test_recomputing_changes_the_running_statistics_and_nothing_else() -> None:
    torch.manual_seed(0)
    net = _net()
    net.train()
    for batch in _images(32, seed=1).split(4):  # statistics of other data, as after training
        net(batch * 3 - 2)
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batches = list(_images().split(4))

    assert recompute_bn_statistics(net, batches) == 4

    after = net.state_dict()
    mean, var = _batch_means(batches)
    torch.testing.assert_close(after["0.running_mean"], mean)
    torch.testing.assert_close(after["0.running_var"], var)
    with torch.no_grad():  # the second BN: the conv's outputs, the first BN normalising each
        bn0, conv = net[0], net[1]  # batch by its own statistics (training mode)
        outputs = [
            conv(F.batch_norm(b, None, None, bn0.weight, bn0.bias, training=True, eps=bn0.eps))
            for b in batches
        ]
    mean, var = _batch_means(outputs)
    torch.testing.assert_close(after["2.running_mean"], mean)
    torch.testing.assert_close(after["2.running_var"], var)
    for key, value in before.items():
        changed = key.endswith(STATISTICS)
        assert torch.equal(after[key], value) != changed, key  # num_batches_tracked kept too
    assert not net.training  # its mode is left as it was


def test_no_batches_is_an_error_not_reset_statistics() -> None:
    net = _net()
    before = net[0].running_var.clone()
    with pytest.raises(ValueError, match="no training batches"):
        recompute_bn_statistics(net, [])
    assert torch.equal(net[0].running_var, before)


class _Data(LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        labels = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(0))
        self.dataset = TensorDataset(_images(), labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=4)  # unshuffled: the batches are known


class _Module(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = _net()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


@pytest.mark.parametrize("polyak", [False, True])
def test_the_callback_recomputes_the_final_weights_statistics_and_saves_them(
    polyak: bool, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    last = ModelCheckpoint(dirpath=tmp_path, filename="last", monitor=None)
    callbacks = [RecomputeBatchNorm(num_batches=3), last]
    if polyak:  # the averaging callback after ours: the order must not matter
        callbacks.append(PolyakAveraging(decay=0.5))
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    module = _Module()
    trainer.fit(module, datamodule=_Data())

    # The first BN's statistics: the plain mean over the first 3 training batches.
    batches = list(_images().split(4))[:3]
    mean, var = _batch_means(batches)
    torch.testing.assert_close(module.net[0].running_mean, mean)
    torch.testing.assert_close(module.net[0].running_var, var)
    # The second BN's: those of the final weights (the average, with Polyak) on the same batches.
    check = _net()
    check.load_state_dict(module.net.state_dict())
    recompute_bn_statistics(check, batches)
    torch.testing.assert_close(module.net[2].running_mean, check[2].running_mean)
    # The final checkpoint holds exactly the network that is tested.
    saved = load_file(tmp_path / "last.ckpt")["state_dict"]
    for key, value in module.state_dict().items():
        torch.testing.assert_close(saved[key], value, msg=key)


def test_shufflenet_recipes_recompute_over_one_pass_and_other_runs_do_not(tmp_path: Path) -> None:
    for recipe, expected in [
        ("shufflenet_v2_x1_0", None),
        ("shufflenet_v1_g3", None),
        ("resnet50", 0),
        ("googlenet_bn", None),
    ]:
        cfg = compose_config("train", [f"model={recipe}"], tmp_path)
        assert cfg.callbacks.recompute_bn.num_batches == expected, recipe


def test_one_pass_is_the_runs_epoch_limits_included() -> None:
    """``num_batches: null`` is one epoch as the run defines it: with
    ``limit_train_batches=2`` (or fast_dev_run) the first two batches, not the whole data."""
    torch.manual_seed(0)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RecomputeBatchNorm(num_batches=None)],
    )
    module = _Module()
    trainer.fit(module, datamodule=_Data())
    mean, var = _batch_means(list(_images().split(4))[:2])
    torch.testing.assert_close(module.net[0].running_mean, mean)
    torch.testing.assert_close(module.net[0].running_var, var)
