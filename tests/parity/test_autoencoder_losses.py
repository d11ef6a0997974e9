"""SpeechBrain's `VariationalAutoencoderLoss` / `AutoencoderLoss` vs jaxlatent's.

Values of every reduction (with and without relative lengths, incl. the adversarial 7/13,
truncation by the default `mse_loss`, ``len_dim=2``) and gradients with respect to `rec`,
`mean` and `log_var` (vector-Jacobian products with random cotangents for unreduced
outputs) against torch autograd. The torch side always uses SpeechBrain's real default
reconstruction loss (`speechbrain.nnet.losses.mse_loss`); the jaxlatent side uses
`sb_mse_unreduced` below, and its own default (`jaxlatent.losses.regression.mse_loss`) in
`test_default_rec_loss`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent.losses import AutoencoderLoss, VariationalAutoencoderLoss
from jaxlatent.models import AutoencoderOutput, VariationalAutoencoderOutput
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

REDUCTIONS = ["batchmean", "batch", "mean", "none", "sum"]
B = 3
LENGTHS = {"none": None, "partial": np.array([1.0, 7 / 13, 0.5], np.float32)}
# (target time, rec time, len_dim): same length, rec shorter by 2 (mse truncates), time on axis 2
CASES = {"plain": (13, 13, 1), "truncated": (13, 11, 1), "len_dim2": (13, 13, 2)}


def sb_mse_unreduced(predictions, targets, reduction="none"):
    """SpeechBrain's `mse_loss(predictions, targets, reduction="none")` with no length.

    `truncate` crops the longer of the two on axis 1 (by at most 3 frames), then the
    elementwise squared error is returned unmasked and unreduced.
    """
    assert reduction == "none"
    diff = predictions.shape[1] - targets.shape[1]
    if abs(diff) > 3:
        raise ValueError("Predictions and targets should be same length")
    if diff < 0:
        targets = targets[:, : predictions.shape[1]]
    elif diff > 0:
        predictions = predictions[:, : targets.shape[1]]
    return (predictions - targets) ** 2


def _data(rng, case, reduction="mean"):
    t_tgt, t_rec, len_dim = CASES[case]
    # Unreduced outputs add rec and KL elementwise, so their shapes must then agree.
    feat, latent = (4, 3) if reduction in ("batchmean", "batch", "mean") else (4, 4)
    if len_dim == 1:
        shapes = (B, t_rec, feat), (B, t_tgt, feat), (B, t_rec, latent)
    else:
        shapes = (B, feat, t_rec), (B, feat, t_tgt), (B, latent, t_rec)
    rec = rng.standard_normal(shapes[0]).astype(np.float32)
    targets = rng.standard_normal(shapes[1]).astype(np.float32)
    mean = rng.standard_normal(shapes[2]).astype(np.float32)
    log_var = (0.5 * rng.standard_normal(shapes[2])).astype(np.float32)
    return rec, targets, mean, log_var, len_dim


def _cotangent(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def _torch_vae_loss(len_dim, rec, targets, mean, log_var, length, reduction, cot):
    torch = ref.torch()
    losses = ref.sb_losses()
    sb_ae = ref.sb_autoencoders()
    rec_t, mean_t, log_var_t = (ref.to_torch(a).requires_grad_(True) for a in (rec, mean, log_var))
    out = sb_ae.VariationalAutoencoderOutput(rec_t, None, mean_t, log_var_t, None, None)
    loss_fn = losses.VariationalAutoencoderLoss(len_dim=len_dim, dist_loss_weight=0.3)
    length_t = None if length is None else ref.to_torch(length)
    details = loss_fn.details(out, ref.to_torch(targets), length_t, reduction)
    (details.loss * torch.from_numpy(cot)).sum().backward()
    grads = [ref.to_numpy(t.grad) for t in (rec_t, mean_t, log_var_t)]
    return [ref.to_numpy(d.detach()) for d in details], grads


def _maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


def _jax_vae_loss(loss_fn, rec, targets, mean, log_var, length, reduction, cot, jit):
    def objective(rec, mean, log_var):
        out = VariationalAutoencoderOutput(rec, None, mean, log_var, None, None)
        details = loss_fn.details(out, targets, length, reduction)
        return jnp.sum(details.loss * cot), details

    grad_fn = _maybe_jit(jax.grad(objective, argnums=(0, 1, 2), has_aux=True), jit)
    grads, details = grad_fn(jnp.asarray(rec), jnp.asarray(mean), jnp.asarray(log_var))
    return details, grads


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("length", list(LENGTHS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_vae_loss_and_gradients(rng, case, length, reduction):
    rec, targets, mean, log_var, len_dim = _data(rng, case, reduction)
    lens = LENGTHS[length]
    loss_fn = VariationalAutoencoderLoss(
        rec_loss=sb_mse_unreduced, len_dim=len_dim, dist_loss_weight=0.3
    )
    probe = loss_fn.details(
        VariationalAutoencoderOutput(rec, None, mean, log_var, None, None),
        targets,
        lens,
        reduction,
    )
    cot = _cotangent(rng, probe.loss.shape)
    t_details, t_grads = _torch_vae_loss(len_dim, rec, targets, mean, log_var, lens, reduction, cot)
    j_details, j_grads = _jax_vae_loss(
        loss_fn, rec, targets, mean, log_var, lens, reduction, cot, jit=case == "plain"
    )
    for name, j, t in zip(j_details._fields, j_details, t_details, strict=True):
        assert np.shape(j) == np.shape(t), name
        assert_close(j, t, "ae_loss_f32", err_msg=name)
    for name, j, t in zip(("rec", "mean", "log_var"), j_grads, t_grads, strict=True):
        assert_close(j, t, "ae_loss_f32", err_msg=f"d loss / d {name}")


@pytest.mark.parametrize("case", ["plain", "truncated", "len_dim2"])
@pytest.mark.parametrize("length", list(LENGTHS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ae_loss_and_gradients(rng, case, length, reduction):
    torch = ref.torch()
    losses = ref.sb_losses()
    sb_ae = ref.sb_autoencoders()
    rec, targets, _, _, len_dim = _data(rng, case)
    lens = LENGTHS[length]
    loss_fn = AutoencoderLoss(rec_loss=sb_mse_unreduced, len_dim=len_dim)

    def objective(rec, cot):
        details = loss_fn.details(AutoencoderOutput(rec, None, None), targets, lens, reduction)
        return jnp.sum(details.loss * cot), details

    probe = loss_fn(AutoencoderOutput(rec, None, None), targets, lens, reduction)
    cot = _cotangent(rng, probe.shape)
    grad_fn = _maybe_jit(jax.grad(objective, has_aux=True), jit=case == "plain")
    j_grad, j_details = grad_fn(jnp.asarray(rec), cot)

    rec_t = ref.to_torch(rec).requires_grad_(True)
    t_loss_fn = losses.AutoencoderLoss(len_dim=len_dim)
    t_details = t_loss_fn.details(
        sb_ae.AutoencoderOutput(rec_t, None, None),
        ref.to_torch(targets),
        None if lens is None else ref.to_torch(lens),
        reduction,
    )
    (t_details.loss * torch.from_numpy(cot)).sum().backward()
    for name, j, t in zip(j_details._fields, j_details, t_details, strict=True):
        assert_close(j, ref.to_numpy(t.detach()), "ae_loss_f32", err_msg=name)
    assert_close(j_grad, ref.to_numpy(rec_t.grad), "ae_loss_f32", err_msg="d loss / d rec")


@pytest.mark.parametrize("reduction", ["batchmean", "batch", "mean", "none"])
def test_default_rec_loss(rng, reduction):
    """jaxlatent's default `rec_loss` (its `mse_loss`) against SpeechBrain's default."""
    rec, targets, mean, log_var, len_dim = _data(rng, "truncated", reduction)
    lens = LENGTHS["partial"]
    j_out = VariationalAutoencoderLoss(dist_loss_weight=0.3).details(
        VariationalAutoencoderOutput(rec, None, mean, log_var, None, None),
        targets,
        lens,
        reduction,
    )
    cot = _cotangent(rng, j_out.loss.shape)
    t_details, _ = _torch_vae_loss(len_dim, rec, targets, mean, log_var, lens, reduction, cot)
    for name, j, t in zip(j_out._fields, j_out, t_details, strict=True):
        assert_close(j, t, "ae_loss_f32", err_msg=name)
    j_ae = AutoencoderLoss()(AutoencoderOutput(rec, None, None), targets, lens, reduction)
    assert_close(j_ae, t_details[1], "ae_loss_f32", err_msg="AutoencoderLoss")


@pytest.mark.parametrize("reduction", ["batch", "none"])
def test_custom_asymmetric_rec_loss_gets_targets_first(rng, reduction):
    """SpeechBrain calls ``rec_loss(targets, rec, reduction="none")``: order matters here."""
    losses = ref.sb_losses()
    sb_ae = ref.sb_autoencoders()
    rec, targets, mean, log_var, _ = _data(rng, "plain", reduction)
    lens = LENGTHS["partial"]

    def asym(first, second, reduction):
        return first * (first - second) + 0.1 * first

    t_out = losses.VariationalAutoencoderLoss(rec_loss=asym).details(
        sb_ae.VariationalAutoencoderOutput(
            ref.to_torch(rec), None, ref.to_torch(mean), ref.to_torch(log_var), None, None
        ),
        ref.to_torch(targets),
        ref.to_torch(lens),
        reduction,
    )
    j_out = VariationalAutoencoderLoss(rec_loss=asym).details(
        VariationalAutoencoderOutput(rec, None, mean, log_var, None, None),
        targets,
        lens,
        reduction,
    )
    for name, j, t in zip(j_out._fields, j_out, t_out, strict=True):
        assert_close(j, ref.to_numpy(t), "ae_loss_f32", err_msg=name)
