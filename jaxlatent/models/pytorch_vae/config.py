"""Frozen, validated configs of the PyTorch-VAE models, with the original's configs as presets.

Every field is either a constructor argument of the original class (AntixK/PyTorch-VAE,
commit a6896b9, ``models/*.py``; same name and default, so the ``model_params`` section of one
of its ``configs/*.yaml`` converts with ``from_model_params``) or a named option for one of
the original's quirks, whose default reproduces the original:

* ``img_size`` (VanillaVAE, BetaVAE, WAE_MMD: the original handles 64×64 only; ConditionalVAE:
  also ``(H, W)``), ``out_channels`` (the original: 3 whatever ``in_channels``) and
  ``output_activation`` ("tanh", although the data are in [0, 1]; "sigmoid" fits them);
* ``negate_logged_kld`` (VanillaVAE, ConditionalVAE: the loss dict logs ``KLD = -KL``);
* ``mmd_estimator`` (WAE_MMD: "original", or "unbiased" for the textbook estimator).

Not reproduced: the original's ``hidden_dims.reverse()`` reverses the *caller's* list in
place; a config holds a tuple, so one config builds any number of identical models.

Presets (classmethods, and ``preset(name)``) are the ``model_params`` of the original's
``configs/*.yaml`` at that commit, named after the file: ``vae``, ``bhvae``, ``bbvae``,
``cvae``, ``wae_mmd_imq``, ``wae_mmd_rbf``, ``vq_vae``.

Example:
  >>> BetaVAEConfig.preset("bbvae").loss_type
  'B'
  >>> VanillaVAEConfig.from_model_params({"name": "VanillaVAE", "in_channels": 1,
  ...                                     "latent_dim": 8}).hidden_dims
  (32, 64, 128, 256, 512)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from jaxlatent._checks import positive_int
from jaxlatent.models.pytorch_vae.base import OUTPUT_ACTIVATIONS

__all__ = [
    "BetaVAEConfig",
    "ConditionalVAEConfig",
    "ConvVAEConfig",
    "VQVAEConfig",
    "VanillaVAEConfig",
    "WAEMMDConfig",
]

_ACTIVATIONS = tuple(OUTPUT_ACTIVATIONS)


def _positive_ints(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty list of positive ints, got {value!r}")
    return tuple(positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))


def _number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(allowed)}")


def _image_size(value: Any) -> int | tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if len(value) != 2:
            raise ValueError(f"img_size must be a positive int or (height, width), got {value!r}")
        return tuple(positive_int("img_size", v) for v in value)  # type: ignore[return-value]
    try:
        return positive_int("img_size", value)
    except ValueError:
        raise ValueError(
            f"img_size must be a positive int or (height, width), got {value!r}"
        ) from None


class _ConfigMixin:
    """`from_model_params` and `preset` of every config (``PRESETS`` names classmethods)."""

    #: The original's class name (the ``name`` entry of its ``model_params``).
    model_name: ClassVar[str] = ""
    #: The presets of this config, each a classmethod of that name.
    PRESETS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_model_params(cls, params: Mapping[str, Any]):
        """The config of an original ``model_params`` dict (e.g. from its ``configs/*.yaml``).

        A ``name`` entry must name this config's model; ``hidden_dims: None`` means the
        default. The dict is not modified.

        Raises:
          ValueError: for a `name` of another model, keys that are not fields of this config
            (listed), or invalid values.
        """
        if not isinstance(params, Mapping):
            raise ValueError(f"model_params must be a mapping, got {type(params).__name__}")
        params = dict(params)
        name = params.pop("name", cls.model_name)
        if name != cls.model_name:
            raise ValueError(
                f"model_params name {name!r} does not describe a {cls.model_name} ({cls.__name__})"
            )
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(str(k) for k in params if k not in fields)
        if unknown:
            raise ValueError(
                f"unknown {cls.model_name} model_params {unknown}; expected a subset of "
                f"{sorted(fields)}"
            )
        if params.get("hidden_dims", ()) is None:
            del params["hidden_dims"]
        return cls(**params)

    @classmethod
    def preset(cls, name: str):
        """The preset called `name` (one of ``PRESETS``).

        Raises:
          ValueError: for an unknown name (the known ones are listed).
        """
        if name not in cls.PRESETS:
            raise ValueError(
                f"unknown {cls.__name__} preset {name!r}; expected one of {list(cls.PRESETS)}"
            )
        return getattr(cls, name)()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConvVAEConfig(_ConfigMixin):
    """Fields shared by the convolutional VAEs (VanillaVAE, BetaVAE, ConditionalVAE, WAE_MMD).

    Attributes:
      in_channels: input image channels.
      latent_dim: latent size.
      hidden_dims: encoder widths (the decoder uses them reversed); the original's default
        ``(32, 64, 128, 256, 512)``.
      img_size: image size handled, ``H`` (square) or ``(H, W)``; both must be multiples of
        ``2**len(hidden_dims)`` (default 64, the original's only size).
      out_channels: channels of the reconstruction (the original: 3).
      output_activation: "tanh" (the original), "sigmoid" (for [0, 1] data) or "identity".

    Raises:
      ValueError: for non-positive sizes, an empty `hidden_dims`, an `img_size` that is not a
        multiple of ``2**len(hidden_dims)`` or an unknown `output_activation`.
    """

    in_channels: int
    latent_dim: int
    hidden_dims: tuple[int, ...] = (32, 64, 128, 256, 512)
    img_size: int | tuple[int, int] = 64
    out_channels: int = 3
    output_activation: str = "tanh"

    def __post_init__(self):
        put = self._put
        put("in_channels", positive_int("in_channels", self.in_channels))
        put("latent_dim", positive_int("latent_dim", self.latent_dim))
        put("hidden_dims", _positive_ints("hidden_dims", self.hidden_dims))
        put("img_size", _image_size(self.img_size))
        put("out_channels", positive_int("out_channels", self.out_channels))
        _choice("output_activation", self.output_activation, _ACTIVATIONS)
        height, width = self.image_shape
        factor = 2 ** len(self.hidden_dims)
        if height % factor or width % factor:
            raise ValueError(
                f"img_size {(height, width)} cannot be handled: the encoder halves height and "
                f"width len(hidden_dims)={len(self.hidden_dims)} times and the decoder doubles "
                f"them back, so both must be multiples of 2**{len(self.hidden_dims)} = {factor}"
            )

    def _put(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(H, W)`` of `img_size`."""
        size = self.img_size
        return (size, size) if isinstance(size, int) else size


@dataclasses.dataclass(frozen=True, kw_only=True)
class VanillaVAEConfig(ConvVAEConfig):
    """Config of `VanillaVAE` (``models/vanilla_vae.py``); fields as `ConvVAEConfig`, plus:

    Attributes:
      negate_logged_kld: log ``KLD = -KL`` in the loss dict, as the original (the total loss
        uses +KL either way); False logs +KL.

    Example:
      >>> VanillaVAEConfig.vae().latent_dim
      128
    """

    model_name: ClassVar[str] = "VanillaVAE"
    PRESETS: ClassVar[tuple[str, ...]] = ("vae",)

    negate_logged_kld: bool = True

    @classmethod
    def vae(cls) -> VanillaVAEConfig:
        """``configs/vae.yaml``: 3 channels, latent 128, the default hidden dims, 64×64."""
        return cls(in_channels=3, latent_dim=128)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BetaVAEConfig(ConvVAEConfig):
    """Config of `BetaVAE` (``models/beta_vae.py``); fields as `ConvVAEConfig`, plus:

    Attributes:
      beta: KL weight of loss 'H' (the original's default 4).
      gamma: weight of loss 'B' (default 1000).
      max_capacity: the capacity reached at the end of the schedule (default 25).
      Capacity_max_iter: length of the capacity schedule in loss calls or steps (1e5).
      loss_type: 'H' (Higgins et al. 2017) or 'B' (Burgess et al. 2018; the default).
      negate_logged_kld: False (the original BetaVAE logs +KL).

    Example:
      >>> BetaVAEConfig.bhvae().beta, BetaVAEConfig.bbvae().Capacity_max_iter
      (10.0, 10000.0)
    """

    model_name: ClassVar[str] = "BetaVAE"
    PRESETS: ClassVar[tuple[str, ...]] = ("bhvae", "bbvae")

    beta: float = 4.0
    gamma: float = 1000.0
    max_capacity: float = 25.0
    Capacity_max_iter: float = 1e5
    loss_type: str = "B"
    negate_logged_kld: bool = False

    def __post_init__(self):
        super().__post_init__()
        self._put("beta", _number("beta", self.beta))
        self._put("gamma", _number("gamma", self.gamma))
        self._put("max_capacity", _number("max_capacity", self.max_capacity))
        self._put(
            "Capacity_max_iter",
            _number("Capacity_max_iter", self.Capacity_max_iter, positive=True),
        )
        _choice("loss_type", self.loss_type, ("H", "B"))

    @classmethod
    def bhvae(cls) -> BetaVAEConfig:
        """``configs/bhvae.yaml``: loss 'H' with beta 10, latent 128."""
        return cls(in_channels=3, latent_dim=128, loss_type="H", beta=10.0)

    @classmethod
    def bbvae(cls) -> BetaVAEConfig:
        """``configs/bbvae.yaml``: loss 'B', gamma 10, capacity 25 over 10000 steps."""
        return cls(
            in_channels=3,
            latent_dim=128,
            loss_type="B",
            gamma=10.0,
            max_capacity=25,
            Capacity_max_iter=10000,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConditionalVAEConfig(ConvVAEConfig):
    """Config of `ConditionalVAE` (``models/cvae.py``); fields as `ConvVAEConfig`, plus:

    Attributes:
      num_classes: width of the label vectors (one-hot classes or multi-hot attributes).
      negate_logged_kld: as `VanillaVAEConfig` (default True, the original's ``-KL``).

    The label embedding has ``H·W`` outputs, so inputs must have exactly `img_size`.

    Example:
      >>> ConditionalVAEConfig.cvae().num_classes
      40
    """

    model_name: ClassVar[str] = "ConditionalVAE"
    PRESETS: ClassVar[tuple[str, ...]] = ("cvae",)

    num_classes: int
    negate_logged_kld: bool = True

    def __post_init__(self):
        super().__post_init__()
        self._put("num_classes", positive_int("num_classes", self.num_classes))

    @classmethod
    def cvae(cls) -> ConditionalVAEConfig:
        """``configs/cvae.yaml``: CelebA's 40 attributes, latent 128."""
        return cls(in_channels=3, num_classes=40, latent_dim=128)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WAEMMDConfig(ConvVAEConfig):
    """Config of `WAE_MMD` (``models/wae_mmd.py``); fields as `ConvVAEConfig`, plus:

    Attributes:
      reg_weight: MMD weight (default 100).
      kernel_type: "imq" (default) or "rbf".
      latent_var: prior variance scale in the kernels' ``C = 2 · D · latent_var`` (2.0).
      mmd_estimator: "original" (the original's estimator, quirks included; see `WAE_MMD`)
        or "unbiased".

    Example:
      >>> WAEMMDConfig.wae_mmd_rbf().reg_weight
      5000.0
    """

    model_name: ClassVar[str] = "WAE_MMD"
    PRESETS: ClassVar[tuple[str, ...]] = ("wae_mmd_imq", "wae_mmd_rbf")

    reg_weight: float = 100.0
    kernel_type: str = "imq"
    latent_var: float = 2.0
    mmd_estimator: str = "original"

    def __post_init__(self):
        super().__post_init__()
        self._put("reg_weight", _number("reg_weight", self.reg_weight))
        self._put("latent_var", _number("latent_var", self.latent_var, positive=True))
        _choice("kernel_type", self.kernel_type, ("imq", "rbf"))
        _choice("mmd_estimator", self.mmd_estimator, ("original", "unbiased"))

    @classmethod
    def wae_mmd_imq(cls) -> WAEMMDConfig:
        """``configs/wae_mmd_imq.yaml``: IMQ kernel, reg_weight 100, latent 128."""
        return cls(in_channels=3, latent_dim=128, reg_weight=100, kernel_type="imq")

    @classmethod
    def wae_mmd_rbf(cls) -> WAEMMDConfig:
        """``configs/wae_mmd_rbf.yaml``: RBF kernel, reg_weight 5000, latent 128."""
        return cls(in_channels=3, latent_dim=128, reg_weight=5000, kernel_type="rbf")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VQVAEConfig(_ConfigMixin):
    """Config of `VQVAE` (``models/vq_vae.py``).

    Attributes:
      in_channels: image channels.
      embedding_dim: code dimension D.
      num_embeddings: codebook size K.
      hidden_dims: encoder widths (the original's default ``(128, 256)``); images need a
        height and width that are multiples of ``2**len(hidden_dims)``.
      beta: commitment weight (0.25).
      img_size: unused, as in the original (kept so that its ``model_params`` convert).
      out_channels: channels of the reconstruction (the original: 3).
      output_activation: "tanh" (the original), "sigmoid" or "identity".

    Raises:
      ValueError: for non-positive sizes, an empty `hidden_dims` or an unknown
        `output_activation`.

    Example:
      >>> VQVAEConfig.vq_vae().num_embeddings
      512
    """

    model_name: ClassVar[str] = "VQVAE"
    PRESETS: ClassVar[tuple[str, ...]] = ("vq_vae",)

    in_channels: int
    embedding_dim: int
    num_embeddings: int
    hidden_dims: tuple[int, ...] = (128, 256)
    beta: float = 0.25
    img_size: int = 64
    out_channels: int = 3
    output_activation: str = "tanh"

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("in_channels", positive_int("in_channels", self.in_channels))
        put("embedding_dim", positive_int("embedding_dim", self.embedding_dim))
        put("num_embeddings", positive_int("num_embeddings", self.num_embeddings))
        put("hidden_dims", _positive_ints("hidden_dims", self.hidden_dims))
        put("beta", _number("beta", self.beta))
        put("img_size", positive_int("img_size", self.img_size))
        put("out_channels", positive_int("out_channels", self.out_channels))
        _choice("output_activation", self.output_activation, _ACTIVATIONS)

    @classmethod
    def vq_vae(cls) -> VQVAEConfig:
        """``configs/vq_vae.yaml``: D = 64, K = 512, beta 0.25, 64×64 images."""
        return cls(in_channels=3, embedding_dim=64, num_embeddings=512, img_size=64, beta=0.25)
