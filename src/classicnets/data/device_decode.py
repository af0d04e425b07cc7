"""``data.decode=gpu``: JPEGs decoded on the accelerator, in batches, by nvJPEG.

At about 1,000 images/s per CPU core, decoding in the DataLoader workers cannot feed the fast
networks (AlexNet, MobileNet, ShuffleNet) on a modern GPU. With ``data.decode=gpu`` a worker only
reads a file's bytes and its header; the main process hands the batch's bytes to torchcodec's
``decode_jpeg(list, device=...)`` (one batched nvJPEG call on CUDA, libjpeg on the CPU) and runs the
same paper preset or test protocol on the decoded pixels where they lie.

The crops are the ones ``data.decode=cpu`` takes: each sample's preset draws its random numbers
from the sample seed of the sampler (``sampling.SeededSampler``), here in the main process with
its own generator state put back afterwards, there in the worker. So a resumed run sees the same
crops with either decoder, and the statistics of the presets are theirs by construction. The
pixels differ slightly: nvJPEG's IDCT is not libjpeg-turbo's, and the device decodes at full size
where the CPU path shrinks large JPEGs in the DCT domain first.

What nvJPEG does not take (PNG and other formats, CMYK JPEGs) is decoded and cropped in the worker
as ``data.decode=cpu`` does. A JPEG that fails on the device is read again by the CPU dataset, in
the main process, under the same sample seed: decoded there if libjpeg-turbo or Pillow can, else
flagged and replaced (training) or dropped (evaluation) exactly as the CPU path does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import simplejpeg
import torch
from torch import Tensor
from torch.utils.data import Dataset

from classicnets.data.decode import EncodedImage
from classicnets.data.folder import ImageFolderDataset
from classicnets.data.sampling import PerSampleSeed
from classicnets.run import checks

DECODERS = ("cpu", "gpu")
# JPEG colour spaces nvJPEG decodes to RGB; CMYK and YCCK go the CPU way (libjpeg-turbo, Pillow).
DEVICE_COLORSPACES = ("YCbCr", "Gray", "RGB")

Output = Any  # a preset's (3, s, s) crop, a protocol's crops or its groups of views
Transform = Callable[[Any], Output]  # a preset or protocol; takes an EncodedImage or DecodedImage


def require_torchcodec() -> None:
    """Fail at configuration time, in one line, when the decoder is not installed."""
    try:
        import torchcodec.decoders  # noqa: F401
    except ImportError as error:
        raise checks.ConfigValueError(
            "data.decode",
            "gpu",
            f"it needs torchcodec ({error}): pip install 'torchcodec>=0.17' "
            "(or scripts/download_wheels.py for machines offline), or keep data.decode=cpu",
        ) from None


class DecodedImage:
    """Pixels already decoded (on any device), with :class:`EncodedImage`'s interface, so the
    presets and protocols run on them unchanged."""

    __slots__ = ("height", "pixels", "width")
    is_jpeg = False  # the pixels are full size: callers read the scale off their shape

    def __init__(self, pixels: Tensor) -> None:
        self.pixels = pixels  # (H, W, 3) uint8
        self.height, self.width = int(pixels.shape[0]), int(pixels.shape[1])

    def decode(self, reduce: int = 1, *, fast: bool = False) -> Tensor:
        return self.pixels


@dataclass(frozen=True)
class Encoded:
    """What a worker ships for one image: the JPEG's bytes, or the output it made itself."""

    jpeg: Tensor | None  # uint8, 1-D: the file, for the device to decode
    done: Output | None = None  # the transform's output, for files nvJPEG does not take
    # The seed the transform draws from: the sample's, or for a broken file's stand-in the one
    # the CPU path augments that stand-in with (``ImageFolderDataset._stand_in``).
    seed: int = 0


class ReadForDevice:
    """The worker's half: the bytes of a JPEG nvJPEG decodes; anything else decoded and
    transformed here, on the CPU, as ``data.decode=cpu`` would."""

    def __init__(self, transform: Transform) -> None:
        self.transform = transform

    def __call__(self, image: EncodedImage) -> Encoded:
        if image.is_jpeg and _device_colorspace(image.data):
            data = torch.frombuffer(bytearray(image.data), dtype=torch.uint8)
            return Encoded(data, seed=torch.initial_seed())
        return Encoded(None, self.transform(image))


def _device_colorspace(data: bytes) -> bool:
    try:
        return simplejpeg.decode_jpeg_header(data)[2] in DEVICE_COLORSPACES
    except ValueError:
        return False


class WithIndexAndSeed(Dataset):
    """``(encoded, target, index, sample seed)``: the main process needs the index and the seed
    to run the preset, and to read a file again when the device cannot decode it."""

    def __init__(self, dataset: ImageFolderDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Encoded, int, int, int] | None:
        # Under PerSampleSeed the generator was just seeded with the sample seed.
        seed = torch.initial_seed()
        sample = self.dataset[index]
        return None if sample is None else (sample[0], sample[1], index, seed)


@dataclass
class EncodedBatch:
    """A batch of ``data.decode=gpu`` on its way to the device: every JPEG's bytes end to end
    (one tensor through the worker queue, not one per image) and, per sample, what the worker
    finished itself (None: the sample's JPEG is the next one in ``jpegs``)."""

    split: str  # "train", "val" or "test": which transform the device runs
    jpegs: Tensor
    offsets: list[int]
    done: list[Output | None]
    targets: Tensor
    indices: list[int]
    seeds: list[int]  # each sample's seed: the CPU path reruns it when the device refuses a file
    augment_seeds: list[int]  # the seed each shipped JPEG's transform draws from

    def __len__(self) -> int:
        return len(self.done)

    def jpeg_bytes(self) -> list[Tensor]:
        return [self.jpegs[a:b] for a, b in zip(self.offsets, self.offsets[1:], strict=False)]


class CollateEncoded:
    """The workers' collate: drops the samples that did not decode (as ``SkipCollate`` does)."""

    def __init__(self, split: str) -> None:
        self.split = split

    def __call__(self, samples: Sequence[tuple[Encoded, int, int, int] | None]) -> EncodedBatch:
        kept = [s for s in samples if s is not None]
        jpegs = [s[0].jpeg for s in kept if s[0].jpeg is not None]
        offsets = [0]
        for jpeg in jpegs:
            offsets.append(offsets[-1] + len(jpeg))
        return EncodedBatch(
            split=self.split,
            jpegs=torch.cat(jpegs) if jpegs else torch.empty(0, dtype=torch.uint8),
            offsets=offsets,
            done=[s[0].done for s in kept],
            targets=torch.tensor([s[1] for s in kept], dtype=torch.int64),
            indices=[s[2] for s in kept],
            seeds=[s[3] for s in kept],
            augment_seeds=[s[0].seed for s in kept],
        )


class DeviceDecoder:
    """The main process's half: decode a batch's JPEGs on ``device`` and run ``transform`` (the
    split's preset or protocol) on each, drawing from the sample's seed.

    Returns what the CPU path's collate returns, on the device: ``(uint8 images, targets)``, or
    for a whole-image protocol (``sample_shape`` None) one image's ``(views, targets)``."""

    def __init__(
        self,
        transform: Transform,
        fallback: ImageFolderDataset,
        sample_shape: tuple[int, ...] | None,
    ) -> None:
        self.transform = transform
        self.fallback = PerSampleSeed(fallback)  # the CPU dataset: same flags, same stand-ins
        self.sample_shape = sample_shape

    def __call__(self, batch: EncodedBatch, device: torch.device) -> tuple[Any, Tensor]:
        pixels = iter(decode_jpegs(batch.jpeg_bytes(), device))
        outputs, targets = [], []
        with torch.random.fork_rng(devices=[]):  # the main process's generator stays where it was
            for done, target, index, seed, augment_seed in zip(
                batch.done,
                batch.targets.tolist(),
                batch.indices,
                batch.seeds,
                batch.augment_seeds,
                strict=True,
            ):
                if done is None:
                    image = next(pixels)
                    if image is None:  # nvJPEG refused it: the CPU path decides, as it would
                        sample = self.fallback[(index, seed)]
                        if sample is None:
                            continue
                        done, target = sample
                    else:
                        torch.default_generator.manual_seed(augment_seed)
                        done = self.transform(DecodedImage(image.permute(1, 2, 0)))
                outputs.append(_to(done, device))
                targets.append(target)
        target_tensor = torch.tensor(targets, dtype=torch.int64, device=device)
        if self.sample_shape is None:  # a whole-image protocol: one image per batch
            return (outputs[0] if outputs else []), target_tensor
        if not outputs:
            empty = torch.empty((0, *self.sample_shape), dtype=torch.uint8, device=device)
            return empty, target_tensor
        return torch.stack(outputs), target_tensor


def decode_jpegs(jpegs: list[Tensor], device: torch.device) -> list[Tensor | None]:
    """(3, H, W) uint8 RGB per JPEG on ``device``, in one batched call; None for each file the
    decoder refuses (nvJPEG fails a whole batch for one bad file: the rest are decoded alone)."""
    if not jpegs:
        return []
    from torchcodec.decoders import decode_jpeg

    try:
        return list(decode_jpeg(jpegs, device=device))
    except RuntimeError:
        pass
    decoded: list[Tensor | None] = []
    for jpeg in jpegs:
        try:
            decoded.append(decode_jpeg(jpeg, device=device))
        except RuntimeError:
            decoded.append(None)
    return decoded


def _to(output: Output, device: torch.device) -> Output:
    if isinstance(output, Tensor):
        return output.to(device, non_blocking=True)
    return [_to(item, device) for item in output]
