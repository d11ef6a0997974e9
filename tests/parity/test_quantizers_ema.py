"""VectorQuantizer's EMA codebook vs lucidrains' vector-quantize-pytorch `VectorQuantize`.

Same codebook, same batches, several training steps with ``decay``/``eps``/commitment weight
matched (``kmeans_init=False``; straight-through, and the rotation trick for L2): the codes
must be equal exactly; the quantized output, the commitment loss, the EMA state (codebook,
``embed_avg`` ↔ ``embed_sum``, ``cluster_size``) and the input gradient of
``loss + Σ w·quantized`` within the named tolerances, for the Euclidean and the cosine
codebook. Dead-code restarts draw random batch vectors (torch's global generator vs an
explicit JAX key), so for them the test checks what is deterministic: which codes die, their
reset statistics, and that both put batch vectors there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import quantizers as q
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

K, D = 32, 6


def _pair(rng, metric, *, threshold=0.0, decay=0.8, beta=0.25, rotation=False):
    lucid = ref.vector_quantize_pytorch()
    tv = lucid.VectorQuantize(
        dim=D,
        codebook_size=K,
        decay=decay,
        eps=1e-5,
        kmeans_init=False,
        rotation_trick=rotation,
        commitment_weight=beta,
        use_cosine_sim=metric == "cosine",
        threshold_ema_dead_code=threshold,
    )
    tv.train()
    codebook = rng.standard_normal((K, D)).astype(np.float32)
    if metric == "cosine":
        codebook /= np.linalg.norm(codebook, axis=1, keepdims=True)
    _set_lucid_codebook(tv, codebook)
    cfg = q.VectorQuantizerConfig.lucidrains(
        K,
        D,
        decay=decay,
        beta=beta,
        metric=metric,
        dead_code_threshold=threshold,
        rotation_trick=rotation,
    )
    jv = q.VectorQuantizer(cfg, rngs=nnx.Rngs(0))
    jv.codebook[...] = jnp.asarray(codebook)
    jv.embed_sum[...] = jnp.asarray(codebook)
    return tv, jv


def _set_lucid_codebook(tv, codebook):
    """Codebook and EMA sums of lucidrains' VectorQuantize, through its public state_dict."""
    state = tv.state_dict()
    for name in ("_codebook.embed", "_codebook.embed_avg"):
        state[name] = ref.to_torch(codebook)[None]
    tv.load_state_dict(state)


def _lucid_state(tv):
    state = tv.state_dict()
    names = ("_codebook.embed", "_codebook.embed_avg", "_codebook.cluster_size")
    return [ref.to_numpy(state[name][0]).copy() for name in names]


@nnx.jit(static_argnames="train")
def _forward(vq, x, w, key, train):
    def objective(vq, x):
        out = vq(x, train=train, key=key)
        return out.loss + jnp.sum(w * out.quantized), out

    (_, out), grad = nnx.value_and_grad(objective, argnums=1, has_aux=True)(vq, x)
    return out, grad


@pytest.mark.parametrize(
    "metric, rotation", [("l2", False), ("cosine", False), ("l2", True)], ids=str
)
def test_ema_training_steps_match_lucidrains(rng, metric, rotation):
    tv, jv = _pair(rng, metric, rotation=rotation)
    out_tol = "vq_rotation_out" if rotation else "vq_ema_lucidrains_out"
    grad_tol = "vq_rotation_grad" if rotation else "vq_ste_grad"
    initial = np.asarray(jv.codebook[...]).copy()
    for step in range(3):
        x = rng.standard_normal((4, 50, D)).astype(np.float32)
        w = rng.standard_normal((4, 50, D)).astype(np.float32)
        xt = ref.to_torch(x).requires_grad_()
        quantized, indices, loss = tv(xt)
        (loss + (ref.to_torch(w) * quantized).sum()).backward()
        # gradient first with train=False (same output, state untouched), then the update
        _, grad = _forward(jv, jnp.asarray(x), jnp.asarray(w), None, train=False)
        out, _ = _forward(jv, jnp.asarray(x), jnp.asarray(w), None, train=True)
        msg = f"{metric}, rotation {rotation}, step {step}"
        np.testing.assert_array_equal(out.indices, ref.to_numpy(indices), err_msg=msg)
        assert_close(out.quantized, ref.to_numpy(quantized), out_tol, err_msg=msg)
        assert_close(out.loss, ref.to_numpy(loss), "vq_ema_lucidrains_out", err_msg=msg)
        assert_close(grad, ref.to_numpy(xt.grad), grad_tol, err_msg=msg)
        if rotation:  # the rotation trick's gradient is not the identity
            straight = w + 0.25 * 2 * (x - np.asarray(out.quantized)) / x.size
            assert np.abs(np.asarray(grad) - straight).max() > 0.1
        embed, embed_avg, cluster_size = _lucid_state(tv)
        assert_close(jv.codebook[...], embed, "vq_ema_lucidrains_state", err_msg=msg)
        assert_close(jv.embed_sum[...], embed_avg, "vq_ema_lucidrains_state", err_msg=msg)
        assert_close(jv.cluster_size[...], cluster_size, "vq_ema_lucidrains_state", err_msg=msg)
    # the comparison is not vacuous: the codebook moved and several codes were used
    assert np.abs(embed - initial).max() > 0.1
    assert len(np.unique(ref.to_numpy(indices))) > K // 2


def test_dead_code_restart_matches_lucidrains_selection(rng):
    # codes 0..7 sit far from the data: never chosen, their EMA size decays 1 → 0.8 → 0.64
    # and falls below the threshold 0.7 in the second step, when both libraries restart them
    torch = ref.torch()
    torch.manual_seed(0)
    tv, jv = _pair(rng, "l2", threshold=0.7)
    codebook = np.asarray(jv.codebook[...]).copy()
    codebook[:8] += 50.0
    _set_lucid_codebook(tv, codebook)
    jv.codebook[...] = jnp.asarray(codebook)
    jv.embed_sum[...] = jnp.asarray(codebook)
    keys = jax.random.split(jax.random.key(0), 2)
    for step, key in enumerate(keys):
        x = rng.standard_normal((4, 50, D)).astype(np.float32)
        _, indices, _ = tv(ref.to_torch(x))
        out, _ = _forward(jv, jnp.asarray(x), jnp.zeros_like(jnp.asarray(x)), key, train=True)
        np.testing.assert_array_equal(out.indices, ref.to_numpy(indices), err_msg=f"step {step}")
    embed, embed_avg, cluster_size = _lucid_state(tv)
    restarted = cluster_size == np.float32(0.7)
    np.testing.assert_array_equal(np.asarray(jv.cluster_size[...]) == np.float32(0.7), restarted)
    assert restarted[:8].all()  # the far codes (and any other starved ones) were restarted
    rows = x.reshape(-1, D)
    for name, cb, es in (
        ("lucidrains", embed, embed_avg),
        ("jaxlatent", np.asarray(jv.codebook[...]), np.asarray(jv.embed_sum[...])),
    ):
        is_row = (cb[restarted][:, None, :] == rows[None]).all(-1).any(1)
        assert is_row.all(), name  # restarted codes are vectors of the last batch
        assert len({tuple(r) for r in cb[restarted]}) == restarted.sum(), name  # distinct
        np.testing.assert_array_equal(es[restarted], cb[restarted] * np.float32(0.7), name)
    # the surviving codes followed the same EMA
    keep = ~restarted
    assert_close(jv.codebook[...][keep], embed[keep], "vq_ema_lucidrains_state")
    assert_close(jv.embed_sum[...][keep], embed_avg[keep], "vq_ema_lucidrains_state")
    assert_close(jv.cluster_size[...][keep], cluster_size[keep], "vq_ema_lucidrains_state")
