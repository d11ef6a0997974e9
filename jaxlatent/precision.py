"""The precision policy of the models' convolutions and matmuls.

Every model of jaxlatent (the DAC codec and its discriminator, the quantizers' projections, the
autoencoders and VAEs) takes a ``precision`` argument, a name of :data:`PRECISIONS` or a
`jax.lax.Precision`, and passes it to every convolution and matmul it runs (the
``precision_config`` of each ``convolution`` / ``dot_general`` in the lowered HLO;
tests/unit/test_precision.py checks it). It decides how float32 operands are multiplied:

=============  ============================  ==============================  =====================
name           CPU (XLA:CPU)                 NVIDIA GPU (Ampere and later)   TPU
=============  ============================  ==============================  =====================
``"highest"``  float32                       float32 (no TF32)               float32-equivalent
                                                                             (6 bfloat16 passes)
``"high"``     float32                       TF32 (10-bit mantissa inputs,   bfloat16x3 (3 passes,
                                             float32 accumulation)           ~float32 products)
``"default"``  float32                       TF32                            one bfloat16 pass
                                                                             (float32 accumulation)
=============  ============================  ==============================  =====================

On CPU the three settings compute the same values (XLA:CPU always multiplies float32 in
float32); before Ampere (e.g. V100) a GPU also has no TF32. bfloat16 / float16 operands are
multiplied exactly whatever the setting (products of two bfloat16 are exact in float32).

:data:`DEFAULT_PRECISION` is ``"highest"``: the values of the PyTorch references (run with
torch's own float32 default on CPU) and exactly the same codes on every backend. ``"default"``
is for speed on accelerators: TF32 keeps 10 mantissa bits of each operand and one bfloat16
pass 7 (float32: 23), so outputs differ from the reference by that rounding compounded over
the layers (not measured here: no accelerator), and a latent near the boundary of two codes
may get the other code.

Whatever the setting, the nearest-code search of the quantizers (the distance matmul of
:func:`jaxlatent.quantizers.nearest_code`; also LFQ's entropy-loss distances) always runs
at ``Precision.HIGHEST``: codes must not depend on the backend. Losses computed with a matmul
(the DAC mel loss's filterbank) are at ``HIGHEST`` too: they are not part of a model.

:func:`set_precision` changes the setting of a model already built (every submodule with a
``precision`` attribute: the convolutions, `flax.nnx.Linear`, the quantizers' projections);
``jaxlatent train --precision`` uses it on the registered models.

Source: `jax.lax.Precision` and JAX's "Matmul precision" documentation (XLA's meaning of
``DEFAULT`` / ``HIGH`` / ``HIGHEST`` per backend); torch's counterpart on CUDA is
``torch.backends.cuda.matmul.allow_tf32`` / ``torch.backends.cudnn.allow_tf32``.

``None`` (JAX's own convention, accepted for callers that pass it through) means
`jax.lax.Precision.DEFAULT` unless ``jax.default_matmul_precision`` says otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:  # imported lazily: the commands check a name before importing jax
    import jax
    from flax import nnx

__all__ = [
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "PrecisionLike",
    "precision_name",
    "resolve_precision",
    "set_precision",
]

#: The precision names, most to least precise (see the module docstring for what each means).
PRECISIONS: tuple[str, ...] = ("highest", "high", "default")
#: The models' precision when none is given: float32 products on every backend.
DEFAULT_PRECISION = "highest"

#: A precision name of :data:`PRECISIONS`, a `jax.lax.Precision`, or ``None`` (JAX's default).
PrecisionLike = Union[str, "jax.lax.Precision", None]


def resolve_precision(precision: PrecisionLike) -> jax.lax.Precision | None:
    """The `jax.lax.Precision` of a precision setting.

    Args:
      precision: a name of :data:`PRECISIONS` (case-insensitive), a `jax.lax.Precision`
        (returned as is), or ``None`` (returned as is: JAX's default precision).

    Returns:
      `jax.lax.Precision` (or ``None``), to pass as ``precision=`` to `jax.lax` convolutions
      and dots.

    Raises:
      ValueError: for an unknown name or a value of another type, e.g.
        ``unknown precision 'fast'; expected one of highest, high, default``.

    Example:
      >>> resolve_precision("highest")
      Precision.HIGHEST
      >>> import jax
      >>> resolve_precision("Default") is jax.lax.Precision.DEFAULT
      True
    """
    import jax

    if precision is None or isinstance(precision, jax.lax.Precision):
        return precision
    if isinstance(precision, str) and precision.lower() in PRECISIONS:
        return jax.lax.Precision[precision.upper()]
    raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")


def precision_name(precision: PrecisionLike) -> str:
    """The name of a precision setting for reports: ``"highest"``, ``"high"``, ``"default"``
    (``None``: ``"default"``, JAX's default). Raises ValueError as :func:`resolve_precision`."""
    resolved = resolve_precision(precision)
    return "default" if resolved is None else resolved.name.lower()


def set_precision(module: nnx.Module, precision: PrecisionLike) -> None:
    """Set the precision of every convolution and matmul of a built model, in place.

    Every node of `module`'s graph (the module itself included) that has a ``precision``
    attribute (`jaxlatent.nn` convolutions, `flax.nnx.Linear`, the quantizers, `DAC`, the
    discriminator) gets the resolved value; the next trace of the model uses it. The
    nearest-code search is not affected (always ``HIGHEST``).

    Args:
      module: an NNX module (concrete or abstract).
      precision: a name of :data:`PRECISIONS` or a `jax.lax.Precision`.

    Raises:
      ValueError: for an unknown precision (nothing is changed then).
    """
    from flax import nnx

    resolved = resolve_precision(precision)
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Module) and hasattr(node, "precision"):
            node.precision = resolved
