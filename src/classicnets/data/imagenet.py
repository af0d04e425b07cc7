"""ImageNet (ILSVRC-2012), or any ImageFolder tree, fed to the network the way each paper did.

    python src/train.py model=alexnet data.root=/data/imagenet
    python src/train.py model=resnet50 data.test_protocol=ten_crop data.num_workers=16

Workers read and decode JPEGs (libjpeg-turbo), crop and flip, and ship uint8 batches; the
per-pixel float work (colour augmentation, normalisation, channels-last) runs batched on the
accelerator in ``on_after_batch_transfer``. ``batch_size`` is the global batch of the paper.
With ``data.decode=gpu`` the workers ship the JPEG bytes instead and the accelerator decodes and
crops them in ``transfer_batch_to_device`` (``device_decode.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from classicnets.data.base import ClassificationDataModule, Views
from classicnets.data.common import (
    ClassMismatchError,
    DatasetNotFoundError,
    per_device_batch_size,
)
from classicnets.data.decode import EncodedImage
from classicnets.data.device_decode import (
    DECODERS,
    CollateEncoded,
    DeviceDecoder,
    EncodedBatch,
    ReadForDevice,
    WithIndexAndSeed,
    require_torchcodec,
)
from classicnets.data.folder import (
    FileIndex,
    ImageFolderDataset,
    SampleTransform,
    SkipCollate,
    find_classes,
    holds_images,
    not_found,
    printable,
    read_class_names,
)
from classicnets.data.index_cache import cached_scan
from classicnets.data.presets import TRAIN_PRESETS, make_train_preset
from classicnets.data.protocols import EVAL_PROTOCOLS, CenterCrop, collate_views, make_protocol
from classicnets.data.sampling import EvenShardBatchSampler, make_loader, train_sampler
from classicnets.data.transforms import (
    LIGHTING_STD,
    PCA_EIGVAL,
    PCA_EIGVEC,
    DeviceAugment,
    pixel_scale,
)
from classicnets.run import checks
from classicnets.run.safe_load import load_file

log = logging.getLogger(__name__)


class ImageNetDataModule(ClassificationDataModule):
    """``<root>/train/<class>/*`` and ``<root>/val/<class>/*``; classes are the train folders.

    Train batches are ``(uint8 (B, 3, s, s), int64 (B,))``; evaluation batches hold
    ``(B, n_crops, 3, s, s)`` images under multi-crop protocols, and one image's groups of
    whole-image views under the fully convolutional ones (``protocols.py``). After the transfer
    to the device, images are normalised floats.

    Args (conf/data/imagenet.yaml documents each with its source):
        root: the dataset root, holding ``train/`` and ``val/``.
        batch_size: the global training batch (the paper's), split over the devices.
        eval_batch_size: global evaluation batch; None keeps crops per batch ≈ batch_size (the
            whole-image protocols take one image per batch).
        input_size: the crop side (AlexNet 227, the others 224).
        train_preset: a paper's augmentation, ``presets.TRAIN_PRESETS``.
        train_scale: [min, max] shorter side for the presets that rescale.
        val_protocol, test_protocol: a name in ``protocols.EVAL_PROTOCOLS``.
        eval_resize: shorter side for center_crop and ten_crop; test_scales for the others.
        normalization: the pixel scale (``transforms.PIXEL_SCALES``); None: the preset's paper's.
        mean, std: the dataset's per-channel statistics in [0, 1] units; None: ImageNet's.
        mean_image: a file of scripts/compute_pca.py whose per-pixel mean image replaces the mean.
        pca_eigval, pca_eigvec, lighting_std: AlexNet's PCA lighting, pixels in [0, 1].
        index_cache_dir: where file indices are cached (``index_cache.py``); None: beside the data.
        decode: ``cpu`` (the workers decode) or ``gpu`` (nvJPEG on the accelerator, in batches:
            ``device_decode.py``).
    """

    in_channels = 3

    def __init__(
        self,
        root: str | Path = "data/imagenet",
        *,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 8,
        input_size: int = 224,
        train_preset: str = "torchvision",
        train_scale: Sequence[int] | None = None,
        val_protocol: str = "center_crop",
        test_protocol: str = "center_crop",
        eval_resize: int = 256,
        test_scales: Sequence[int] | None = None,
        normalization: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        mean_image: str | Path | None = None,
        pca_eigval: Sequence[float] = PCA_EIGVAL,
        pca_eigvec: Sequence[Sequence[float]] = PCA_EIGVEC,
        lighting_std: float = LIGHTING_STD,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        channels_last: bool = True,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "val",
        index_cache_dir: str | None = None,
        decode: str = "cpu",
    ) -> None:
        super().__init__()
        checks.positive_int("data.batch_size", batch_size)
        checks.positive_int("data.eval_batch_size", eval_batch_size, optional=True)
        checks.non_negative_int("data.num_workers", num_workers)
        checks.one_of("data.train_preset", train_preset, TRAIN_PRESETS)
        checks.one_of("data.val_protocol", val_protocol, EVAL_PROTOCOLS)
        checks.one_of("data.test_protocol", test_protocol, EVAL_PROTOCOLS)
        checks.one_of("data.decode", decode, DECODERS)
        if decode == "gpu":
            require_torchcodec()
        self.decode = decode
        self.root = Path(root).expanduser()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.input_size = num_workers, input_size
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.index_cache_dir = index_cache_dir
        self.val_protocol, self.test_protocol = val_protocol, test_protocol
        scale = (int(train_scale[0]), int(train_scale[1])) if train_scale is not None else None
        preset = make_train_preset(train_preset, input_size=input_size, train_scale=scale)
        scales = [int(s) for s in test_scales] if test_scales is not None else None
        self.transforms: dict[str, SampleTransform] = {
            "train": preset.transform,
            "val": make_protocol(
                val_protocol, input_size=input_size, resize=eval_resize, scales=scales
            ),
            "test": make_protocol(
                test_protocol, input_size=input_size, resize=eval_resize, scales=scales
            ),
        }
        self.pixel_scale = pixel_scale(normalization or preset.normalization, mean, std)
        self.device_augment = DeviceAugment(
            self.pixel_scale,
            photometric=preset.photometric,
            eigval=[float(v) for v in pca_eigval],
            eigvec=[[float(v) for v in row] for row in pca_eigvec],
            lighting_std=lighting_std,
            mean_image=read_mean_image(mean_image) if mean_image is not None else None,
            channels_last=channels_last,
        )
        self.datasets: dict[str, ImageFolderDataset] = {}
        self._indices: dict[str, FileIndex] = {}  # by split folder: val and test share one scan
        self._device_decoders: dict[str, DeviceDecoder] = {}  # data.decode=gpu, by split
        self.world_size, self.rank = 1, 0
        self._classes: list[str] | None = None
        self._class_names: list[str] | None = None
        self._reported_skips = self._summarised_skips = 0
        self._restored_bad: dict[str, list[str]] = {}  # files a checkpoint found bad, per split

    # The class mapping: train folder names, sorted; read on first use, checked against checkpoints.
    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = self._find_classes()
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        """Human-readable names (from ``synsets.txt``, written by prepare_imagenet), else wnids."""
        if self._class_names is None:
            names = read_class_names(self.root)
            self._class_names = [names.get(c, c) for c in self.classes]
        return self._class_names

    def _find_classes(self) -> list[str]:
        train = self.root / self.splits["train"]
        if self.root.is_file():
            raise checks.ConfigValueError("data.root", str(self.root), "it is a file; use a folder")
        if not self.root.is_dir():
            raise not_found(self.root, f"data.root {self.root} does not exist")
        classes = find_classes(train)
        if not classes:
            raise not_found(self.root, f"{train} holds no class folders")
        if not any(holds_images(train / c) for c in classes):
            raise not_found(
                self.root, f"the {len(classes)} class folders under {train} hold no images"
            )
        return classes

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint, so a checkpoint always knows what its outputs mean; and the
        files found undecodable (this rank's), so a resumed run knows them too."""
        # Folder datasets keep their list; shards replace a bad image by the last good one that
        # their worker read, which no checkpoint can make exact (docs/guarantees.md).
        bad = {k: d.bad_state() for k, d in self.datasets.items() if hasattr(d, "bad_state")}
        return {
            "classes": list(self.classes),
            "class_names": list(self.class_names),
            "bad_files": {key: files for key, files in bad.items() if files},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_bad = dict(state_dict.get("bad_files") or {})
        for key, dataset in self.datasets.items():
            if hasattr(dataset, "restore_bad"):
                dataset.restore_bad(self._restored_bad.get(key, ()))
        saved = list(state_dict["classes"])
        try:
            current = self.classes
        except DatasetNotFoundError:  # evaluating a checkpoint without its training folders
            self._classes, self._class_names = saved, list(state_dict["class_names"])
            return
        if current != saved:
            first = next(
                (i for i, (a, b) in enumerate(zip(current, saved, strict=False)) if a != b), None
            )
            raise ClassMismatchError(
                f"the checkpoint was trained on {len(saved)} classes but {self.root} holds "
                f"{len(current)} class folders (first difference at index {first}); class "
                "indices would not mean the same classes: point data.root at the tree it was "
                "trained on"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.world_size, self.rank = self.trainer.world_size, self.trainer.global_rank
        # Fail now, not after an epoch, if the global batch cannot be split over the devices.
        self.train_batch_size = per_device_batch_size(self.batch_size, self.world_size)
        if stage in ("fit", None):
            self._dataset("train", replace_bad=True)
        if stage in ("fit", "validate", None):
            self._dataset("val", replace_bad=False)
        if stage in ("test", None):
            self._dataset("test", replace_bad=False)

    def _dataset(self, key: str, *, replace_bad: bool) -> ImageFolderDataset:
        if key in self.datasets:
            return self.datasets[key]
        split = self.splits[key]
        if split not in self._indices:
            directory = self.root / split
            index = cached_scan(directory, self.classes, self.index_cache_dir)
            if not len(index):
                raise not_found(self.root, f"{directory} holds no images of the training classes")
            empty = [c for c, n in zip(self.classes, index.class_counts(), strict=True) if n == 0]
            if empty:
                log.warning(
                    "%s: %d class folders hold no images (%s); class indices stay as they are",
                    directory,
                    len(empty),
                    ", ".join(map(printable, empty[:10])),
                )
            unknown = sorted(set(find_classes(directory)) - set(self.classes))
            if unknown:
                log.warning(
                    "%s: ignoring folders that are not training classes: %s", directory, unknown
                )
            log.info("%s: %d images, %d classes", directory, len(index), len(self.classes))
            self._indices[split] = index
        # Datasets of one split folder (val and test) share the index and the broken-file flags.
        shared = next((d for d in self.datasets.values() if d.index is self._indices[split]), None)
        dataset = ImageFolderDataset(
            self._indices[split],
            self.transforms[key],
            replace_bad=replace_bad,
            bad=shared.bad if shared is not None else None,
        )
        dataset.restore_bad(self._restored_bad.get(key, ()))
        self.datasets[key] = dataset
        return dataset

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        # A DistributedSampler on one process too: the order is a function of (seed, epoch), so
        # a resumed run sees the same batches; Lightning calls set_epoch on it.
        sampler = train_sampler(dataset)
        size = self.input_size
        loaded, collate = self._for_decoder("train", (3, size, size))
        return self._loader(
            loaded,
            batch_size=self.train_batch_size,
            sampler=sampler,
            drop_last=len(sampler) >= self.train_batch_size,  # a tiny last batch upsets BN
            collate_fn=collate,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _eval_loader(self, key: str) -> DataLoader:
        dataset, protocol = self.datasets[key], self.transforms[key]
        if getattr(protocol, "whole_image", False):  # whole images of any size: one per batch
            sampler = EvenShardBatchSampler(len(dataset), 1, self.world_size, self.rank)
            loaded, collate = self._for_decoder(key, None)
            return self._loader(loaded, batch_sampler=sampler, collate_fn=collate)
        n_crops, size = protocol.n_crops, getattr(protocol, "size", self.input_size)
        # Default: as many crops per batch as training has images, so multi-crop memory stays flat.
        total = self.eval_batch_size or max(1, self.batch_size // n_crops)
        batch = max(1, math.ceil(total / self.world_size))
        sampler = EvenShardBatchSampler(len(dataset), batch, self.world_size, self.rank)
        shape = (3, size, size) if n_crops == 1 else (n_crops, 3, size, size)
        loaded, collate = self._for_decoder(key, shape)
        return self._loader(loaded, batch_sampler=sampler, collate_fn=collate)

    def _for_decoder(
        self, key: str, sample_shape: tuple[int, ...] | None
    ) -> tuple[Dataset, Callable[[list[Any]], Any]]:
        """The dataset and collate of a split's loader. ``data.decode=gpu``: a dataset of the
        same files and broken-file flags whose workers read bytes, and the decoder that
        ``transfer_batch_to_device`` runs on them."""
        dataset = self.datasets[key]
        if self.decode == "cpu":
            if sample_shape is None:
                return dataset, collate_views
            return dataset, SkipCollate(sample_shape)
        reader = ImageFolderDataset(
            dataset.index,
            ReadForDevice(self.transforms[key]),
            replace_bad=dataset.replace_bad,
            bad=dataset.bad,
        )
        self._device_decoders[key] = DeviceDecoder(self.transforms[key], dataset, sample_shape)
        return WithIndexAndSeed(reader), CollateEncoded(key)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if isinstance(batch, EncodedBatch):  # data.decode=gpu: decode and crop on the device
            return self._device_decoders[batch.split](batch, device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return make_loader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            **kwargs,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor]:
        images, targets = batch
        training = self.trainer is not None and self.trainer.training
        self._report_skips()
        if isinstance(images, list):  # a whole-image protocol's groups of views (protocols.py)
            views = [[self.device_augment(v, train=False) for v in group] for group in images]
            return views, targets
        return self.device_augment(images, train=training), targets

    def _split_datasets(self) -> list[ImageFolderDataset]:
        """One dataset per split folder (val and test share their flags)."""
        unique = {id(d.bad): d for d in self.datasets.values()}
        return list(unique.values())

    @property
    def num_skipped(self) -> int:
        """Files found undecodable so far, over all splits (on this process's rank)."""
        return sum(d.num_skipped for d in self._split_datasets())

    def skipped_files(self) -> list[str]:
        return [path for d in self._split_datasets() for path in d.skipped_files()]

    def _report_skips(self) -> None:
        skipped = self.num_skipped
        if skipped > self._reported_skips:
            log.warning("%d undecodable image files skipped so far", skipped)
            self._reported_skips = skipped

    def teardown(self, stage: str | None = None) -> None:
        if self.num_skipped > self._summarised_skips:
            self._summarised_skips = self.num_skipped
            files = [printable(f) for f in self.skipped_files()]
            log.warning(
                "skipped %d undecodable image files: %s%s",
                len(files),
                ", ".join(files[:20]),
                " ..." if len(files) > 20 else "",
            )

    # What predict and neighbours need (data/base.py), without a trainer.
    @property
    def takes_whole_images(self) -> bool:
        return bool(getattr(self.transforms["test"], "whole_image", False))

    def decode_for_test(self, data: bytes) -> Tensor | Views:
        return self.transforms["test"](EncodedImage(data))

    def network_input(self, pixels: Tensor | Views, device: str | torch.device) -> Tensor | Views:
        """The paper's pixel scale (and channels-last), as evaluation's device step makes it."""
        if isinstance(pixels, list):
            return [[self.device_augment(v.to(device), train=False) for v in g] for g in pixels]
        return self.device_augment(pixels.to(device), train=False)

    def item_names(self, split: str) -> list[str]:
        index = self._split_index(split)
        return [index.path(i) for i in range(len(index))]

    def item_views(self, split: str) -> Dataset:
        """Each file's centre ``input_size`` crop of its shorter side at 256."""
        return _Rows(
            ImageFolderDataset(
                self._split_index(split), CenterCrop(self.input_size), replace_bad=False
            )
        )

    def _split_index(self, split: str) -> FileIndex:
        """A split's files, scanned once (and cached, index_cache.py) as ``setup`` scans them."""
        self._dataset(split, replace_bad=split == "train")
        return self._indices[self.splits[split]]


def read_mean_image(path: str | Path) -> Tensor:
    """The (3, H, W) per-pixel mean, in [0, 1] units, from a scripts/compute_pca.py file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"data.mean_image={path} does not exist; write it with "
            "python scripts/compute_pca.py DATA_ROOT --out FILE"
        )
    stats = load_file(path)
    if not isinstance(stats, dict) or not isinstance(stats.get("mean_image"), Tensor):
        raise FileNotFoundError(f"{path} holds no 'mean_image'; write one with compute_pca.py")
    return stats["mean_image"]


class _Rows(Dataset):
    """``(pixels, row)`` of each sample of a dataset of ``(pixels, class)``; None stays None."""

    def __init__(self, samples: Dataset) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)  # type: ignore[arg-type]

    def __getitem__(self, row: int) -> tuple[Tensor, int] | None:
        sample = self.samples[row]
        return None if sample is None else (sample[0], row)
