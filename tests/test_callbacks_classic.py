"""ZFNet's filter renormalisation and GoogLeNet's Polyak averaging, checked with real numbers on
tiny Lightning runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from classicnets.run.safe_load import load_file
from classicnets.training.callbacks import FilterRenorm, PolyakAveraging, renorm_filters_


def _filter_rms(conv: nn.Conv2d) -> Tensor:
    return conv.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()


def test_renorm_filters_rescales_only_filters_above_the_radius() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3, 2))
    conv, fc = net[0], net[2]
    with torch.no_grad():
        conv.weight.copy_(torch.randn_like(conv.weight))
        conv.weight[0] *= 0.5 / _filter_rms(conv)[0]  # RMS 0.5: too large
        conv.weight[1] *= 0.05 / _filter_rms(conv)[1]  # RMS 0.05: inside the radius
        conv.weight[2] = 0.0
        fc.weight.fill_(3.0)
    before = conv.weight.clone()
    bias = conv.bias.clone()

    renorm_filters_(net, max_rms=0.1)

    torch.testing.assert_close(_filter_rms(conv)[:2], torch.tensor([0.1, 0.05]))
    torch.testing.assert_close(conv.weight[0], before[0] * 0.2)  # same direction, 1/5 the size
    assert torch.equal(conv.weight[1:], before[1:])
    assert torch.equal(conv.bias, bias) and torch.all(fc.weight == 3.0)


class _TinyNet(LightningModule):
    """Two convs and a linear layer, trained on random images with plain SGD."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(64, 3)
        )
        self.lr = lr

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def _loader(n: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    )
    return DataLoader(data, batch_size=4)


def _trainer(callbacks: list[Callback], max_epochs: int = 1, **kwargs: Any) -> Trainer:
    return Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **({"enable_checkpointing": False} | kwargs),
    )


class _RecordRMS(Callback):
    """The largest conv filter RMS after every training batch (so after every optimizer step)."""

    def __init__(self) -> None:
        self.max_rms: list[float] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        convs = [m for m in pl_module.modules() if isinstance(m, nn.Conv2d)]
        self.max_rms.append(max(_filter_rms(c).max().item() for c in convs))


@pytest.mark.parametrize("renorm", [False, True])
def test_filter_renorm_caps_filters_after_every_step(renorm: bool) -> None:
    """With a large learning rate the filters outgrow 0.1; with the callback no filter is ever
    above 0.1 after a step (the run without it shows the cap is doing the work)."""
    torch.manual_seed(0)
    record = _RecordRMS()
    callbacks: list[Callback] = [FilterRenorm(0.1), record] if renorm else [record]
    _trainer(callbacks, max_epochs=3).fit(_TinyNet(lr=5.0), _loader())
    assert len(record.max_rms) == 12
    if renorm:
        assert max(record.max_rms) <= 0.1 + 1e-6
        assert max(record.max_rms) == pytest.approx(0.1, rel=1e-5)  # the cap was reached
    else:
        assert max(record.max_rms) > 0.2


class _RecordWeights(Callback):
    """The raw weights after each step, and what validation sees."""

    def __init__(self) -> None:
        self.raw: list[Tensor] = []
        self.at_validation: list[Tensor] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        self.raw.append(pl_module.net[-1].weight.detach().clone())

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, *_: Any
    ) -> None:
        self.at_validation.append(pl_module.net[-1].weight.detach().clone())


def _ema(raw: list[Tensor], decay: float) -> Tensor:
    average = raw[0]  # AveragedModel copies the weights on its first update
    for w in raw[1:]:
        average = decay * average + (1 - decay) * w
    return average


def test_polyak_average_is_evaluated_kept_and_saved(tmp_path: Path) -> None:
    torch.manual_seed(0)
    record = _RecordWeights()
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path, filename="epoch{epoch}", auto_insert_metric_name=False, save_top_k=-1
    )
    trainer = _trainer(
        [PolyakAveraging(decay=0.5), record, checkpoint], max_epochs=2, enable_checkpointing=True
    )
    model = _TinyNet(lr=0.5)
    trainer.fit(model, _loader(), _loader(8))
    assert len(record.raw) == 8  # 4 steps per epoch

    # Validation runs on the average of the steps so far, not on the raw weights...
    ema_4, ema_8 = _ema(record.raw[:4], 0.5), _ema(record.raw, 0.5)
    torch.testing.assert_close(record.at_validation[0], ema_4)
    torch.testing.assert_close(record.at_validation[2], ema_8)
    assert not torch.allclose(ema_4, record.raw[3], atol=1e-3)
    # ...while training went on from the raw weights (the swap was undone after validation).
    assert not torch.allclose(record.raw[4], ema_4, atol=1e-3)

    # The trained model ends up holding the average.
    torch.testing.assert_close(model.net[-1].weight.detach(), ema_8)

    # Checkpoints: the average as state_dict, the raw weights beside it.
    saved = load_file(tmp_path / "epoch1.ckpt")  # the Polyak state reads as plain data
    torch.testing.assert_close(saved["state_dict"]["net.4.weight"], ema_8)
    torch.testing.assert_close(saved["current_model_state"]["net.4.weight"], record.raw[-1])


def test_polyak_equal_weight_mean_and_late_start() -> None:
    """decay=None is the plain mean of the iterates; before start_epoch validation sees the raw
    weights, not the random initial ones."""
    torch.manual_seed(0)
    record = _RecordWeights()
    model = _TinyNet(lr=0.5)
    _trainer([PolyakAveraging(decay=None, start_epoch=1), record], max_epochs=2).fit(
        model, _loader(), _loader(8)
    )
    torch.testing.assert_close(record.at_validation[0], record.raw[3])  # epoch 0: raw weights
    mean = torch.stack(record.raw[4:]).mean(0)  # epoch 1's four steps
    torch.testing.assert_close(record.at_validation[2], mean)
    torch.testing.assert_close(model.net[-1].weight.detach(), mean)
