"""Pictures and arrays the apps write: PNG grids, spectrogram rows and ``.npy`` files, atomically.

Used by `jaxlatent train` (eval pictures) and `jaxlatent sample` / `jaxlatent generate`.
`save_spectrograms` draws rows of log spectrograms (input vs reconstruction of audio models,
one column per segment, one colour scale for the whole figure).
Images are channels-last float ``[n, H, W, C]`` in [0, 1] (values outside are clipped in
pictures, never in arrays).
"""

from __future__ import annotations

import io

import numpy as np

from jaxlatent.atomic import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    _pyplot().close(fig)
    atomic_write(path, buf.getvalue())


def save_npy(path: str, array: np.ndarray) -> None:
    """`array` as a ``.npy`` file at `path`, atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write(path, buf.getvalue())


def save_grid(path: str, rows: list[tuple[str, np.ndarray]], *, slots: int | None = None) -> None:
    """A PNG with one row of images ``[n, H, W, C]`` (in [0, 1]) per titled row, atomically.

    Args:
      path: the PNG file to write.
      rows: ``(title, images)`` pairs, drawn top to bottom, images left to right.
      slots: draw every row on the scale of a row of this many images (left-aligned), so a
        shorter last row keeps the size of the others (default: each row fills the width).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.2 * len(rows) + 0.4), squeeze=False)
    for ax, (title, images) in zip(axes[:, 0], rows, strict=True):
        images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
        strip = np.concatenate(list(images), axis=1)  # [H, n·W, C]
        if strip.shape[-1] == 1:
            ax.imshow(strip[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(strip)
        if slots is not None:
            ax.set_xlim(-0.5, slots * images.shape[2] - 0.5)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)


def chunks(images: np.ndarray, per_row: int) -> list[np.ndarray]:
    """`images` ``[n, ...]`` split into consecutive rows of at most `per_row`."""
    return [images[i : i + per_row] for i in range(0, len(images), per_row)]


def save_spectrograms(
    path: str, rows: list[tuple[str, np.ndarray]], *, xlabel: str, panel: str = "segment"
) -> None:
    """A PNG with one row of spectrograms ``[n, frames, bins]`` per titled row, atomically.

    Each row's title is written above its first panel, panels are labelled ``f"{panel} {i}"``
    inside; `xlabel` names the frame axis.

    Every panel shares the colour scale of the first row (the input, its 1st to 99.5th
    percentile), so reconstruction errors show as colour differences.
    """
    plt = _pyplot()
    n = max(len(r[1]) for r in rows)
    ref = np.asarray(rows[0][1], np.float32)
    vmin, vmax = (float(v) for v in np.percentile(ref, [1.0, 99.5]))
    fig, axes = plt.subplots(
        len(rows), n, figsize=(3 * n, 2.2 * len(rows) + 0.2), squeeze=False, sharey=True
    )
    for r, (title, specs) in enumerate(rows):
        axes[r, 0].set_title(title, loc="left", fontsize=9)  # may run over the row: no titles
        axes[r, 0].set_ylabel("frequency bin", fontsize=8)
        for i, ax in enumerate(axes[r]):
            if i >= len(specs):
                ax.axis("off")
                continue
            spec = np.asarray(specs[i], np.float32)
            ax.imshow(spec.T, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
            ax.text(0.02, 0.95, f"{panel} {i}", transform=ax.transAxes, color="white",
                    fontsize=7, va="top")  # fmt: skip
            ax.set_xlabel(xlabel, fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    _save(fig, path)
