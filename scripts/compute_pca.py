"""Mean, std and principal components of the RGB pixel values of an image folder, printed as the
overrides that give a dataset its own statistics and AlexNet lighting; with ``--out``, also the
per-pixel mean image that AlexNet, ZFNet and ResNet subtracted, stored with the eigenvectors.

    python scripts/compute_pca.py data/my_dataset --images 10000 --out data/pixels.pt
    python src/train.py model=alexnet data.root=data/my_dataset data.mean_image=data/pixels.pt

The mean image is the average of every image's centre 256×256 square after its shorter side is
resized to 256 (AlexNet §2: "subtracting the mean activity over the training set from each
pixel", of the 256×256 images it trained on), in [0, 1] units.

AlexNet §4.1: "PCA on the set of RGB pixel values throughout the ImageNet training set"; the
lighting adds eigvec · (α ⊙ eigval), α ~ N(0, 0.1). Pixels are in [0, 1]; eigval are the
eigenvalues of their 3×3 covariance, largest first; eigvec holds the eigenvectors in its
columns (the convention of docs/recipes.md and fb.resnet.torch; an eigenvector's sign is arbitrary
and does not matter, α being symmetric). Images are drawn at random, every pixel of each used.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from classicnets.data.decode import EncodedImage, resize, shorter_side_size
from classicnets.data.folder import DECODE_ERRORS, FileIndex, SkippedImageWarning, find_classes
from classicnets.run.errors import ArgumentParser, exit_on_user_error, positive

MEAN_IMAGE_SIDE = 256  # AlexNet §2: images rescaled to a shorter side of 256, centre 256×256


def pixel_statistics(
    root: str | Path, split: str = "train", max_images: int = 10000, seed: int = 0
) -> dict[str, list]:
    """{"mean", "std", "pca_eigval", "pca_eigvec", "mean_image"} of the pixels of up to
    max_images images; mean_image is (3, 256, 256), the others per channel."""
    directory = Path(root) / split
    index = FileIndex.scan(directory, find_classes(directory))
    if not len(index):
        raise FileNotFoundError(f"no images under {directory}/<class>/")
    chosen = np.random.default_rng(seed).permutation(len(index))[:max_images]
    total = torch.zeros(3, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    side = MEAN_IMAGE_SIDE
    image_sum = torch.zeros(3, side, side, dtype=torch.float64)
    count = images = 0
    for i in chosen:
        path = index.path(int(i))
        try:
            pixels = EncodedImage(Path(path).read_bytes()).decode()
        except DECODE_ERRORS as error:
            warnings.warn(f"skipping undecodable image {path}: {error}", SkippedImageWarning, 2)
            continue
        x = pixels.reshape(-1, 3).double() / 255
        total += x.sum(0)
        outer += x.T @ x
        count += len(x)
        scaled = resize(pixels, shorter_side_size(*pixels.shape[:2], side))
        top, left = (scaled.shape[1] - side) // 2, (scaled.shape[2] - side) // 2
        image_sum += scaled[:, top : top + side, left : left + side].double() / 255
        images += 1
    mean = total / count
    covariance = outer / count - torch.outer(mean, mean)
    eigval, eigvec = torch.linalg.eigh(covariance)  # ascending
    eigval, eigvec = eigval.flip(0), eigvec.flip(1)
    return {
        "mean": mean.tolist(),
        "std": covariance.diagonal().sqrt().tolist(),
        "pca_eigval": eigval.tolist(),
        "pca_eigvec": eigvec.tolist(),
        "mean_image": (image_sum / images).float(),
    }


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="an ImageFolder tree: ROOT/SPLIT/<class>/*")
    parser.add_argument("--split", default="train")
    parser.add_argument("--images", type=positive, default=10000, help="how many images to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, help="also store the statistics and mean image (data.mean_image)"
    )
    args = parser.parse_args(argv)
    stats = pixel_statistics(args.root, args.split, args.images, args.seed)
    mean_image = stats.pop("mean_image")
    if args.out is not None:
        tensors = {key: torch.tensor(value) for key, value in stats.items()}
        torch.save({**tensors, "mean_image": mean_image}, args.out)
        print(f"wrote {args.out}: data.mean_image={args.out}")

    def fmt(values: list) -> str:
        if isinstance(values[0], list):
            return "[" + ",".join(fmt(v) for v in values) + "]"
        return "[" + ",".join(f"{v:.4g}" for v in values) + "]"

    std = stats.pop("std")
    print(" ".join(f"data.{key}={fmt(value)}" for key, value in stats.items()))
    # The raw-pixel recipes (AlexNet, VGG, ResNet, ...) keep the 0-255 scale: std is only for the
    # scales that divide by one (data.normalization=torchvision or inception).
    print(f"with data.normalization=torchvision, also: data.std={fmt(std)}")


if __name__ == "__main__":
    main()
