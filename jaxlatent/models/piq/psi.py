"""PIQ's PSI decoders: `VectorQuantizedPSI_Audio` and its FocalNet/ViT variants, channels-last.

Ports of SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.VectorQuantizedPSI_Audio`,
`VectorQuantizedPSIFocalNet_Audio` and `VectorQuantizedPSIViT_Audio` (Paissan, Subakan &
Ravanelli 2023, arXiv:2303.12659): an optional residual adapter and 2× down-sampling of a
classifier's representation, PIQ's class-partitioned codebook
(:class:`jaxlatent.quantizers.piq.VQEmbedding`), 2× up-sampling and a transposed-conv decoder to a
one-channel log-power spectrogram.

Kept from SpeechBrain: the decoder applies **ReLU before BatchNorm**; the returned `hcat` is
the representation *after* `down`; `z_q_x` is the codebook-gradient branch of the quantizer
(``z_q_x_bar``) while the decoder sees the straight-through branch; the FocalNet/ViT decoders'
width-1 kernels with padding 1 crop (negative effective padding, handled by
`jaxlatent.nn.ConvTranspose2d`); all convs get `weights_init` (Xavier uniform, zero bias).
``use_adapter=False`` with ``adapter_reduce_dim=True`` raises ValueError at construction
(SpeechBrain fails with AttributeError in ``forward``).

Train/eval (the project's convention, README "Layout convention"): ``__call__(hs, labels, *,
train=False)``. ``train=True``: BatchNorm batch statistics (running statistics updated) and the
quantizer's ``"TRAIN"`` stage (shared keys forbidden); ``train=False`` (default): running
statistics and the evaluation stage. NNX's ``.train()``/``.eval()`` do not change what a call
computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
from flax import nnx

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.models.piq.blocks import ResBlockAudio, weights_init
from jaxlatent.nn import BatchNorm, Conv2d, ConvTranspose2d
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, set_precision
from jaxlatent.quantizers.piq import VQEmbedding

Array = jax.Array
Size = int | tuple[int, int]

#: (kernel, stride) of the five transposed convs of `VectorQuantizedPSI_Audio`'s decoder.
PSI_DECODER = ((3, 2), (4, 2), (4, 2), (4, 2), (12, 1))
#: (kernel, stride) of the FocalNet/ViT decoders.
PSI_FOCALNET_DECODER = ((3, (4, 5)), ((4, 1), 2), ((4, 1), 2), ((4, 2), 2), ((10, 8), 1))


class PSIOutput(NamedTuple):
    """Output of the PSI models (SpeechBrain's 3-tuple, channels-last)."""

    #: ``[batch, H', W', 1]``: the reconstructed log-power spectrogram.
    x_tilde: Array
    #: ``[batch, h, w, dim]``: the (adapted, down-sampled) representation that is quantized.
    hcat: Array
    #: ``[batch, h, w, dim]``: the chosen codes, gradient to the codebook only.
    z_q_x: Array


class PSIDecoder(nnx.Module):
    """``4 × [ConvTranspose2d(padding 1) → ReLU → BatchNorm]`` then ``ConvTranspose2d(dim → 1)``.

    torch `decoder` indices: 0/3/6/9/12 → `deconv1..5`, 2/5/8/11 → `bn1..4` (ReLUs at 1/4/7/10).

    Args:
      dim: channels.
      layers: five ``(kernel, stride)`` pairs (:data:`PSI_DECODER`,
        :data:`PSI_FOCALNET_DECODER`).
      rngs: `nnx.Rngs`.
    """

    def __init__(self, dim: int, layers: Sequence[tuple[Size, Size]], *, rngs: nnx.Rngs):
        if len(layers) != 5:
            raise ValueError(f"PSIDecoder needs 5 (kernel, stride) pairs, got {len(layers)}")
        self.layers = tuple(layers)
        (k1, s1), (k2, s2), (k3, s3), (k4, s4), (k5, s5) = layers
        self.deconv1 = ConvTranspose2d(dim, dim, k1, s1, 1, rngs=rngs)
        self.bn1 = BatchNorm(dim)
        self.deconv2 = ConvTranspose2d(dim, dim, k2, s2, 1, rngs=rngs)
        self.bn2 = BatchNorm(dim)
        self.deconv3 = ConvTranspose2d(dim, dim, k3, s3, 1, rngs=rngs)
        self.bn3 = BatchNorm(dim)
        self.deconv4 = ConvTranspose2d(dim, dim, k4, s4, 1, rngs=rngs)
        self.bn4 = BatchNorm(dim)
        self.deconv5 = ConvTranspose2d(dim, 1, k5, s5, 1, rngs=rngs)

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        """Decode ``[batch, h, w, dim]`` → ``[batch, H', W', 1]`` (`train`: BatchNorm batch
        statistics, updating the running ones)."""
        ura = not train
        for deconv, bn in (
            (self.deconv1, self.bn1),
            (self.deconv2, self.bn2),
            (self.deconv3, self.bn3),
            (self.deconv4, self.bn4),
        ):
            x = bn(jax.nn.relu(deconv(x)), use_running_average=ura)
        return self.deconv5(x)


class VectorQuantizedPSI_Audio(nnx.Module):
    """Reconstructs log-power spectrograms from a classifier's representations.

    Args:
      dim: channels of the representation and of the codes.
      K: codebook size.
      numclasses: number of classes of the codebook partition.
      activate_class_partitioning: restrict each item to its class's codes.
      shared_keys: number of codes shared by all classes (forbidden in training).
      use_adapter: learn a `ResBlockAudio` adapter on the representation.
      adapter_reduce_dim: down-sample by 2 before quantization and up-sample by 2 after.
      rngs: `nnx.Rngs` (``params`` stream: layer init, codebook, `weights_init`).
      precision: precision of every convolution and matmul (:mod:`jaxlatent.precision`;
        default ``"highest"``); the code search is at ``HIGHEST`` whatever this is.

    Raises:
      ValueError: if ``adapter_reduce_dim`` is set without ``use_adapter``, or the codebook
        partition is invalid (``shared_keys > K``, ...).

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.VectorQuantizedPSI_Audio`.

    Example:
      SpeechBrain's doctest shapes (traced with `jax.eval_shape`, nothing computed):

      >>> import jax.numpy as jnp
      >>> def run(hs, labels):
      ...     psi = VectorQuantizedPSI_Audio(dim=256, K=1024, rngs=nnx.Rngs(0))
      ...     return psi(hs, labels)
      >>> out = jax.eval_shape(run, jnp.ones((2, 16, 16, 256)), jnp.array([0.0, 2.0]))
      >>> [o.shape for o in out]  # x_tilde, hcat, z_q_x
      [(2, 257, 257, 1), (2, 8, 8, 256), (2, 8, 8, 256)]
    """

    decoder_layers = PSI_DECODER

    def __init__(
        self,
        dim: int = 128,
        K: int = 512,
        numclasses: int = 50,
        activate_class_partitioning: bool = True,
        shared_keys: int = 0,
        use_adapter: bool = True,
        adapter_reduce_dim: bool = True,
        *,
        rngs: nnx.Rngs,
        precision: PrecisionLike = DEFAULT_PRECISION,
    ):
        if adapter_reduce_dim and not use_adapter:
            raise ValueError(
                "adapter_reduce_dim=True needs use_adapter=True (SpeechBrain creates the "
                "down/up convs only with the adapter)"
            )
        self.dim = dim
        self.use_adapter = use_adapter
        self.adapter_reduce_dim = adapter_reduce_dim
        self.codebook = VQEmbedding(
            K,
            dim,
            numclasses=numclasses,
            activate_class_partitioning=activate_class_partitioning,
            shared_keys=shared_keys,
            rngs=rngs,
        )
        self.adapter = ResBlockAudio(dim, rngs=rngs) if use_adapter else None
        if adapter_reduce_dim:
            self.down = Conv2d(dim, dim, 4, 2, 1, rngs=rngs)
            self.up = ConvTranspose2d(dim, dim, 4, 2, 1, rngs=rngs)
        else:
            self.down = self.up = None
        self.decoder = PSIDecoder(dim, self.decoder_layers, rngs=rngs)
        weights_init(self, rngs=rngs)
        set_precision(self, precision)

    def __call__(self, hs: Array, labels, *, train: bool = False) -> PSIOutput:
        """Reconstruct from `hs` ``[batch, H, W, dim]`` and `labels` ``[batch]``.

        Args:
          hs: floating classifier representations, channels-last.
          labels: ``[batch]`` predicted classes (integer or floating whole numbers in
            ``[0, numclasses)``).
          train: see the module docstring.

        Returns:
          :class:`PSIOutput` ``(x_tilde, hcat, z_q_x)``.

        Raises:
          ValueError: if `hs` is not a floating ``[batch, H, W, dim]`` array, or for bad
            labels (see :func:`jaxlatent.quantizers.vector_quantization`).
        """
        check_floating("hs", hs)
        if hs.ndim != 4 or hs.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} expects hs [batch, H, W, {self.dim}], got shape "
                f"{shape_str(hs)}"
            )
        hcat = self.adapter(hs, train=train) if self.adapter is not None else hs
        if self.down is not None:
            hcat = self.down(hcat)
        z_q_x_st, z_q_x = self.codebook.straight_through(hcat, labels, train=train)
        if self.up is not None:
            z_q_x_st = self.up(z_q_x_st)
        x_tilde = self.decoder(z_q_x_st, train=train)
        return PSIOutput(x_tilde, hcat, z_q_x)


class VectorQuantizedPSIFocalNet_Audio(VectorQuantizedPSI_Audio):
    """`VectorQuantizedPSI_Audio` with the FocalNet decoder (:data:`PSI_FOCALNET_DECODER`).

    Arguments as `VectorQuantizedPSI_Audio` (default ``dim=1024``).

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.VectorQuantizedPSIFocalNet_Audio`.

    Example:
      SpeechBrain's doctest shapes (traced with `jax.eval_shape`, nothing computed):

      >>> import jax.numpy as jnp
      >>> def run(hs, labels):
      ...     psi = VectorQuantizedPSIFocalNet_Audio(dim=256, K=1024, rngs=nnx.Rngs(0))
      ...     return psi(hs, labels)
      >>> out = jax.eval_shape(run, jnp.ones((2, 16, 16, 256)), jnp.array([0.0, 2.0]))
      >>> [o.shape for o in out]  # x_tilde, hcat, z_q_x
      [(2, 495, 593, 1), (2, 8, 8, 256), (2, 8, 8, 256)]
    """

    decoder_layers = PSI_FOCALNET_DECODER

    def __init__(self, dim: int = 1024, **kwargs):
        super().__init__(dim=dim, **kwargs)


class VectorQuantizedPSIViT_Audio(VectorQuantizedPSI_Audio):
    """`VectorQuantizedPSI_Audio` with the ViT decoder (identical to the FocalNet one).

    Arguments as `VectorQuantizedPSI_Audio` (default ``dim=768``).

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.VectorQuantizedPSIViT_Audio`.

    Example:
      >>> import jax.numpy as jnp
      >>> def run(hs, labels):
      ...     return VectorQuantizedPSIViT_Audio(dim=256, K=1024, rngs=nnx.Rngs(0))(hs, labels)
      >>> out = jax.eval_shape(run, jnp.ones((2, 16, 16, 256)), jnp.array([0.0, 2.0]))
      >>> [o.shape for o in out]  # x_tilde, hcat, z_q_x
      [(2, 495, 593, 1), (2, 8, 8, 256), (2, 8, 8, 256)]
    """

    decoder_layers = PSI_FOCALNET_DECODER

    def __init__(self, dim: int = 768, **kwargs):
        super().__init__(dim=dim, **kwargs)
