"""The fully convolutional test protocols (VGG dense, VGG multi-crop + dense, ResNet multi-scale)
and the 320 crop: their geometry against a hand computation, the score averaging, and one test
epoch through the DataModule and Lightning."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning import Trainer
from PIL import Image

from classicnets.data.decode import EncodedImage
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.protocols import collate_views, make_protocol, rescale
from classicnets.training.module import ClassificationModule

HEIGHT, WIDTH = 300, 400  # a landscape test image


@pytest.fixture(scope="module")
def photo() -> EncodedImage:
    """A 300×400 JPEG whose columns differ, so a mirror or an off-by-one crop shows."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return EncodedImage(buffer.getvalue())


def shapes(views: list[list[torch.Tensor]]) -> list[list[tuple[int, ...]]]:
    return [[tuple(stack.shape) for stack in group] for group in views]


def test_vgg_dense_is_the_whole_image_at_three_scales_and_its_mirror(photo: EncodedImage) -> None:
    """Q = 256, 384, 512 on the shorter side (300): the longer side 400·Q/300, truncated (341,
    512, 682), as torchvision's Resize; each scale with its horizontal flip."""
    protocol = make_protocol("vgg_dense", input_size=224)
    views = protocol(photo)
    assert shapes(views) == [[(2, 3, 256, 341), (2, 3, 384, 512), (2, 3, 512, 682)]]
    assert protocol.n_crops == 6
    for stack, scaled in zip(views[0], rescale(photo, (256, 384, 512)), strict=True):
        assert torch.equal(stack[0], scaled) and torch.equal(stack[1], scaled.flip(-1))


def test_resnet_multi_scale_is_the_whole_image_at_five_scales(photo: EncodedImage) -> None:
    """§3.4: shorter side 224, 256, 384, 480, 640; 400·s/300 → 298, 341, 512, 640, 853; no flips."""
    views = make_protocol("resnet_multi_scale", input_size=224)(photo)
    assert shapes(views) == [
        [(1, 3, 224, 298), (1, 3, 256, 341), (1, 3, 384, 512), (1, 3, 480, 640), (1, 3, 640, 853)]
    ]


def test_vgg_dense_multi_crop_keeps_the_two_methods_apart(photo: EncodedImage) -> None:
    protocol = make_protocol("vgg_dense_multi_crop", input_size=224)
    views = protocol(photo)
    assert shapes(views) == [
        [(150, 3, 224, 224)],
        [(2, 3, 256, 341), (2, 3, 384, 512), (2, 3, 512, 682)],
    ]
    assert torch.equal(views[0][0], make_protocol("multi_scale", input_size=224)(photo))
    assert protocol.n_crops == 156


def test_crop_320_is_the_centre_of_the_image_at_shorter_side_320(photo: EncodedImage) -> None:
    """Shorter side 300 → 320: 320 × 426 (400·320/300 = 426.7, truncated); the centre 320 columns
    start at round((426 - 320) / 2) = 53, whatever the training crop."""
    crop = make_protocol("crop_320", input_size=224)(photo)
    (scaled,) = rescale(photo, [320])
    assert scaled.shape == (3, 320, 426)
    assert torch.equal(crop, scaled[:, :, 53:373])


def test_scores_are_averaged_within_then_across_groups() -> None:
    """The module's score: each group's mean softmax over its views, then the groups' mean."""
    torch.manual_seed(0)
    module = ClassificationModule(net={"name": "resnet18"}, num_classes=5, in_channels=3).eval()
    views = [[torch.randn(3, 3, 32, 32)], [torch.randn(2, 3, 32, 48), torch.randn(2, 3, 48, 64)]]
    with torch.no_grad():
        got = module(views)
        crops = module.net(views[0][0]).softmax(-1).mean(0)
        dense = torch.cat([module.net(v).softmax(-1) for v in views[1]]).mean(0)
    assert got.shape == (1, 5)
    torch.testing.assert_close(got.exp()[0], (crops + dense) / 2)


def test_collate_takes_one_image_and_skips_a_broken_one() -> None:
    views = [[torch.zeros(1, 3, 4, 5, dtype=torch.uint8)]]
    got, targets = collate_views([(views, 3)])
    assert got is views and targets.tolist() == [3]
    empty, none = collate_views([None])
    assert empty == [] and none.numel() == 0
    with pytest.raises(ValueError, match="one image per batch"):
        collate_views([(views, 1), (views, 2)])


def test_a_test_epoch_through_the_datamodule(fake_imagenet: Path) -> None:
    """Whole images of several sizes, one per batch, normalised on the device and scored by a
    fully convolutional ResNet: every test image counted, at small scales to stay cheap."""
    dm = ImageNetDataModule(
        fake_imagenet,
        batch_size=4,
        num_workers=0,
        input_size=32,
        test_protocol="resnet_multi_scale",
        test_scales=[32, 48],
    )
    model = ClassificationModule(net={"name": "resnet18"}, num_classes=4, in_channels=3)
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    (metrics,) = trainer.test(model, datamodule=dm)
    assert 0.0 <= metrics["test/resnet_multi_scale/acc_top1"] <= 1.0
    assert np.isfinite(metrics["test/resnet_multi_scale/loss"])
    batches = list(dm.test_dataloader())
    assert len(batches) == len(dm.datasets["test"]) == 8  # 4 classes × 2 val images
    views, _ = dm.on_after_batch_transfer(batches[0], 0)
    assert [v.dtype for v in views[0]] == [torch.float32, torch.float32]
    assert min(views[0][0].shape[-2:]) == 32 and min(views[0][1].shape[-2:]) == 48
