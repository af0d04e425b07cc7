"""ImageNet as streaming shards (litdata): the same presets, protocols and decoding as the folders.

    python scripts/make_shards.py --root /data/imagenet --out /data/imagenet_shards
    python src/train.py model=resnet50 data=imagenet_shards data.root=s3://bucket/imagenet

``scripts/make_shards.py`` packs each split into chunks of the original JPEG bytes and labels,
and writes ``dataset.json`` (class order, names, image counts) beside them. Training streams the
chunks (a local folder, or any object store litdata reads: ``s3://``, ``gs://``, ``azure://``),
shuffled over all ranks and nodes by litdata, which also checkpoints its position: Lightning saves
the loader's state in every checkpoint and a resumed run continues the epoch where it stopped.
Evaluation reads the shards by index, through the folders' even-shard sampler, so under DDP every
image is counted once (``sampling.EvenShardBatchSampler``).

A shard image that cannot be decoded is reported by name; in training the last good image of its
class stands in (as a random one of the class does for the folders), in evaluation it is dropped.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset
from torch import Tensor
from torch.utils.data import Dataset

from classicnets.data.common import DatasetNotFoundError
from classicnets.data.decode import EncodedImage
from classicnets.data.folder import DECODE_ERRORS, SampleTransform, SkipCollate, SkippedImageWarning
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.run import checks
from classicnets.run.checks import ConfigValueError

log = logging.getLogger(__name__)

METADATA = "dataset.json"  # written by make_shards: classes, class_names, images per split


def is_url(root: str) -> bool:
    return "://" in root


def read_metadata(root: str) -> dict[str, Any]:
    """``<root>/dataset.json``, from a local folder or an object store (obstore, as litdata)."""
    try:
        if not is_url(root):
            return json.loads((Path(root).expanduser() / METADATA).read_text())
        import obstore
        from obstore.store import from_url

        return json.loads(bytes(obstore.get(from_url(root), METADATA).bytes()))
    except (FileNotFoundError, OSError, json.JSONDecodeError) as error:
        raise DatasetNotFoundError(
            f"no streaming shards at {root} ({METADATA}: {error}). Convert an ImageFolder tree "
            f"with `python scripts/make_shards.py --root DIR --out {root}`, or point data.root=... "
            "at the folder or URL that make_shards wrote"
        ) from error


class ShardImages(StreamingDataset):
    """``(transform(image), label)`` per shard item.

    Streams when iterated (training) and reads by index (evaluation, :class:`ShardIndexView`).
    An undecodable image is reported once and flagged in ``bad`` (shared memory, one byte per
    item, so every loader worker's findings reach the main process). Then either the last good
    image of its class that this worker read stands in (``replace_bad``: training keeps its batch
    size and class balance), or the sample is ``None`` and is dropped from its batch (evaluation,
    or no image of the class read yet).
    """

    def __init__(
        self,
        url: str,
        transform: SampleTransform,
        num_items: int,
        *,
        replace_bad: bool = False,
        bad: Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(url, **kwargs)
        self.url, self.sample_transform, self.replace_bad = url, transform, replace_bad
        self.bad = bad if bad is not None else torch.zeros(num_items, dtype=torch.uint8)
        self.bad.share_memory_()
        self.last_good: dict[int, int] = {}  # class -> item index, in this worker

    def __getitem__(self, index: Any) -> tuple[Tensor, int] | None:
        item = super().__getitem__(index)
        i = index if isinstance(index, int) else index.index
        label = int(item["label"])
        pixels = self._decode(item, i)
        if pixels is not None:
            self.last_good[label] = i
            return pixels, label
        if self.replace_bad and label in self.last_good:
            # A fresh augmentation of an image of the class (local chunks: a read in place).
            j = self.last_good[label]
            pixels = self._decode(StreamingDataset.__getitem__(self, j), j)
            return (pixels, label) if pixels is not None else None
        return None

    def _decode(self, item: dict[str, Any], i: int) -> Tensor | None:
        if self.bad[i]:
            return None
        try:
            return self.sample_transform(EncodedImage(bytes(item["image"])))
        except DECODE_ERRORS as error:
            self.bad[i] = 1
            warnings.warn(
                f"skipping undecodable image {_name(item)} (item {i} of {self.url}): {error}",
                SkippedImageWarning,
                stacklevel=3,
            )
            return None

    def name(self, i: int) -> str:
        """The file an item came from (relative to its split folder), for messages."""
        return f"{self.url}#{i} ({_name(StreamingDataset.__getitem__(self, i))})"

    def skipped_files(self) -> list[str]:
        return [self.name(int(i)) for i in self.bad.nonzero().flatten()]

    @property
    def num_skipped(self) -> int:
        return int(self.bad.sum())


def _name(item: dict[str, Any]) -> str:
    return bytes(item["name"]).decode()


class ShardIndexView(Dataset):
    """A map-style view of a split's shards, for the even-shard evaluation sampler."""

    def __init__(self, shards: ShardImages, num_items: int) -> None:
        self.shards, self.num_items, self.bad = shards, num_items, shards.bad

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        return self.shards[int(i)]

    def skipped_files(self) -> list[str]:
        return self.shards.skipped_files()

    @property
    def num_skipped(self) -> int:
        return self.shards.num_skipped


class TrainerEpochLoader(StreamingDataLoader):
    """litdata's loader, its passes numbered by the trainer's epoch, resumed only once.

    The loader counts its own passes, each shuffled by (seed, pass); a fresh loader in a run
    resumed at an epoch boundary would count from one again and repeat the first epoch's order.
    The pass after ``load_state_dict`` (Lightning's mid-epoch resume) continues from the loaded
    position; litdata keeps that ``restore`` flag until a pass runs to its end, which Lightning's
    epochs never do (they stop after ``len(loader)`` batches), so the next epoch would resume the
    finished one again and yield nothing: every later pass starts afresh here.
    """

    def __init__(self, *args: Any, epoch: Callable[[], int | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch = epoch
        self.resuming = False

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        super().load_state_dict(obj)
        self.resuming = True

    def __iter__(self) -> Iterator[Any]:
        # A generator, like litdata's: the pass is chosen at the first batch, not when the
        # iterator is made. Lightning makes it while configuring the optimizers (to count the
        # run's steps), before the checkpoint's loop state and loader state are restored.
        if not self.resuming:
            self.restore = False
            epoch = self.epoch()
            if epoch is not None:
                self.current_epoch = epoch  # litdata adds one as the pass starts
        self.resuming = False
        yield from super().__iter__()


class ShardsDataModule(ImageNetDataModule):
    """:class:`ImageNetDataModule` over ``<root>/<split>/`` shards written by make_shards.

    Args, beyond ImageNetDataModule's (conf/data/imagenet_shards.yaml):
        root: the folder or object-store URL make_shards wrote.
        cache_dir: where litdata keeps downloaded chunks (None: litdata's default).
        max_cache_size: the most chunk bytes kept there, e.g. "100GB".
    """

    def __init__(
        self,
        root: str = "data/imagenet_shards",
        *,
        cache_dir: str | None = None,
        max_cache_size: str = "100GB",
        **kwargs: Any,
    ) -> None:
        super().__init__(root, **kwargs)
        if self.decode != "cpu":
            raise checks.ConfigValueError(
                "data.decode", self.decode, "shards decode in the workers: use data.decode=cpu"
            )
        self.url = str(root).rstrip("/")  # Path() would fold s3:// into s3:/
        self.cache_dir, self.max_cache_size = cache_dir, max_cache_size

    @cached_property
    def metadata(self) -> dict[str, Any]:
        return read_metadata(self.url)

    def _find_classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self._class_names = list(self.metadata["class_names"])
        return self._class_names

    def _dataset(self, key: str, *, replace_bad: bool) -> Dataset:
        if key in self.datasets:
            return self.datasets[key]
        split = self.splits[key]
        counts = self.metadata["splits"]
        if split not in counts:
            raise DatasetNotFoundError(
                f"{self.url} holds no {split!r} split (it has {sorted(counts)}): rerun "
                f"`python scripts/make_shards.py --root DIR --out {self.url}` or set "
                f"data.{key}_split=..."
            )
        # Datasets of one split (val and test) share their broken-item flags.
        shared = next((d for k, d in self.datasets.items() if self.splits[k] == split), None)
        shards = ShardImages(
            f"{self.url}/{split}",
            self.transforms[key],
            counts[split],
            replace_bad=replace_bad,
            bad=shared.bad if shared is not None else None,
            shuffle=key == "train",
            drop_last=True if key == "train" else None,  # evaluation reads by index: unused
            # the run's seed (seed_everything): the same order on every rank and after a resume
            seed=torch.initial_seed() % 2**31,
            cache_dir=self.cache_dir,
            max_cache_size=self.max_cache_size,
        )
        log.info("%s/%s: %d images, %d classes", self.url, split, counts[split], self.num_classes)
        dataset = shards if key == "train" else ShardIndexView(shards, counts[split])
        self.datasets[key] = dataset  # type: ignore[assignment]
        return dataset

    def item_names(self, split: str) -> list[str]:
        raise self._not_listed()

    def item_views(self, split: str) -> Dataset:
        raise self._not_listed()

    def _not_listed(self) -> ConfigValueError:
        """Nearest neighbours index images by file; shards hold them by chunk."""
        return ConfigValueError(
            "data",
            "imagenet_shards",
            "neighbours read the images of an ImageFolder tree: "
            "pass data=imagenet data.root=DIR, the folders make_shards read",
        )

    def train_dataloader(self) -> TrainerEpochLoader:
        size = self.input_size
        return TrainerEpochLoader(
            self.datasets["train"],
            epoch=self._next_epoch,
            batch_size=self.train_batch_size,
            num_workers=self.num_workers,
            collate_fn=SkipCollate((3, size, size)),
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            drop_last=True,
        )

    def _next_epoch(self) -> int | None:
        """The epoch the trainer is about to run. Lightning creates the iterator before a resumed
        run finishes the epoch its checkpoint closed (``current_epoch`` still counts that one), so
        this counts the epochs whose training ran through."""
        if self.trainer is None:
            return None
        return self.trainer.fit_loop.epoch_progress.current.processed
