"""Image data for `jaxlatent train`: scikit-learn's bundled digits, or a folder of images.

Both give channels-last float32 images ``[examples, size, size, channels]`` in [0, 1] and
one-hot labels ``[examples, num_classes]``:

* ``"digits"`` — `sklearn.datasets.load_digits` (1797 8×8 grayscale digits shipped inside
  scikit-learn, no download), resized bilinearly to the model's size; labels are the digits.
* a folder — every image file below it (sorted paths, read with Pillow), resized to the
  model's size; labels are the names of the first-level subfolders (one class when the
  images lie directly in the folder).

Grayscale images are replicated to 3 channels for RGB models; images with more channels
than the model takes (RGB for a grayscale model, or an alpha channel) are refused.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np

from jaxlatent.apps.folders import data_files

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageData(NamedTuple):
    """Images ``[n, H, W, C]`` float32 in [0, 1], one-hot labels ``[n, classes]``, names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``[n, h, w, c]`` to ``[n, size, size, c]``, clipped to [0, 1]."""
    import jax

    n, _, _, c = images.shape
    out = jax.image.resize(images, (n, size, size, c), method="linear", antialias=True)
    return np.clip(np.asarray(out, np.float32), 0.0, 1.0)


def _channels(images: np.ndarray, channels: int, what: str) -> np.ndarray:
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1:
        return np.repeat(images, channels, axis=-1)
    raise ValueError(
        f"{what} has {have} channels but the model takes {channels}; pick a preset with "
        f"{have} channels or convert the images"
    )


@functools.lru_cache(maxsize=4)
def load_digits_images(size: int, channels: int) -> ImageData:
    """scikit-learn's digits resized to ``size`` × ``size`` with `channels` channels.

    Cached per ``(size, channels)``; the arrays are read-only.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[..., None]
    images = _channels(_resize(images, size), channels, "digits")
    labels = _one_hot(digits.target.astype(np.int64), 10)
    images.flags.writeable = False
    labels.flags.writeable = False
    return ImageData(images, labels, tuple(str(i) for i in range(10)), "digits")


def _read_image(path: str, size: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in ("1", "I", "I;16", "F"):
                img = img.convert("L")
            bands = len(img.getbands())
            if bands != channels and not (bands == 1 and channels == 3):
                raise ValueError(
                    f"image {path} has {bands} channels ({img.mode}) but the model takes "
                    f"{channels}; pick a preset with {bands} channels or convert the images"
                )
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"image {path} cannot be read ({e})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return _channels(arr, channels, f"image {path}")


def load_image_folder(folder: str, size: int, channels: int) -> ImageData:
    """Every image file below `folder`, resized; classes from first-level subfolders.

    Raises:
      ValueError: if `folder` is not a folder, holds no image files, or an image cannot be
        read or has a channel count the model cannot take.
    """
    if not os.path.isdir(folder):
        raise ValueError(f"data source {folder!r} is neither 'digits' nor a folder")
    paths = data_files(folder, IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(
            f"data folder {folder!r} has no usable image files (looked for "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    keys = [_class_of(p, folder) for p in paths]
    classes = sorted(set(keys))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([index[k] for k in keys])
    images = np.stack([_read_image(p, size, channels) for p in paths])
    names = tuple(classes)
    return ImageData(images, _one_hot(labels, len(names)), names, folder)


def _class_of(path: str, folder: str) -> str:
    """The first-level subfolder holding `path`, or "." for files directly in `folder`."""
    parts = os.path.relpath(path, folder).split(os.sep)
    return parts[0] if len(parts) > 1 else "."


def load_images(source: str, size: int, channels: int) -> ImageData:
    """``"digits"`` or a folder of images (see the module docstring)."""
    if source == "digits":
        return load_digits_images(size, channels)
    return load_image_folder(source, size, channels)
