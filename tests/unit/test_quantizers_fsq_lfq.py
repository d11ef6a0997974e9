"""FSQ/LFQ families without the reference: bad input, the keyed randomness (noise dropout,
quantizer dropout, the sampled per-sample entropy) and the usage statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import quantizers as q
from jaxlatent.quantizers._projection import project
from tests.tolerances import assert_close


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: q.FSQ(levels=[8, 2]), r"levels=\[8, 2\] contains 2"),
        (lambda: q.FSQ(levels=[5, 1]), r"levels must be .* >= 2, got \[5, 1\]"),
        (lambda: q.FSQ(levels=[]), r"levels must be .*, got \[\]"),
        (lambda: q.FSQ(levels=[4.5, 3]), r"levels must be .*, got \[4.5, 3\]"),
        (lambda: q.FSQ(levels=[5, 5], noise_dropout=0.1), r"noise_dropout=0.1 needs"),
        (
            lambda: q.FSQ(levels=[5, 5], noise_dropout=1.5, preserve_symmetry=True),
            r"noise_dropout must lie in \[0, 1\], got 1.5",
        ),
        (lambda: q.FSQ(levels=[5, 5], channel_first=True), r"channel_first=True"),
        (
            lambda: q.FSQ(levels=[5, 5], num_codebooks=2, keep_num_codebooks_dim=False),
            r"keep_num_codebooks_dim=False .* num_codebooks=2",
        ),
        (lambda: q.FSQ(levels=[5, 5], dim=4), r"rngs is required"),
        (
            lambda: q.ResidualFSQ(levels=[5, 5], num_quantizers=2, soft_clamp_input_value=1.0),
            r"soft_clamp_input_value=1.0 must be None with bound_hard_clamp=True",
        ),
        (
            lambda: q.ResidualFSQ(
                levels=[5, 5],
                num_quantizers=2,
                quantize_dropout=True,
                quantize_dropout_cutoff_index=2,
            ),
            r"quantize_dropout_cutoff_index=2 must be < num_quantizers=2",
        ),
        (
            lambda: q.GroupedResidualFSQ(dim=10, groups=3, levels=[5], num_quantizers=1),
            r"dim=10 must be divisible by groups=3",
        ),
        (lambda: q.LFQ(codebook_size=48), r"codebook_size must be a power of 2.*got 48"),
        (lambda: q.LFQ(), r"either dim or codebook_size"),
        (
            lambda: q.LFQ(codebook_size=16, frac_per_sample_entropy=0.0),
            r"frac_per_sample_entropy must lie in \(0, 1\], got 0.0",
        ),
        (
            lambda: q.LFQ(codebook_size=16, soft_clamp_input_value=0.5),
            r"soft_clamp_input_value=0.5 must be >= codebook_scale=1.0",
        ),
        (
            lambda: q.ResidualLFQ(dim=4, num_quantizers=2, codebook_size=24),
            r"codebook_size must be a power of 2.*got 24",
        ),
        (
            lambda: q.GroupedResidualLFQ(
                dim=8, groups=2, num_quantizers=1, codebook_size=16, accept_image_fmap=True
            ),
            r"accept_image_fmap=True",
        ),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_calls_raise_value_error_naming_them():
    x = jnp.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"dim=3, got shape \(2, 3, 4\)"):
        q.FSQ(levels=[5, 5, 5])(x)
    with pytest.raises(ValueError, match=r"dim=16, got shape \(2, 3, 4\)"):
        q.LFQ(codebook_size=2**16)(x)
    with pytest.raises(ValueError, match=r"key is required .*noise_dropout=0.5"):
        q.FSQ(levels=[5, 5, 5, 5], preserve_symmetry=True, noise_dropout=0.5)(x, train=True)
    with pytest.raises(ValueError, match=r"key is required .*quantize_dropout"):
        q.ResidualFSQ(levels=[5, 5, 5, 5], num_quantizers=2, quantize_dropout=True)(x, train=True)
    with pytest.raises(ValueError, match=r"key is required .*frac_per_sample_entropy=0.5"):
        q.LFQ(codebook_size=16, frac_per_sample_entropy=0.5)(x, train=True)
    with pytest.raises(ValueError, match=r"mask must be a bool array of shape \(2, 3\)"):
        q.LFQ(codebook_size=16)(x, train=True, mask=jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"x must be a floating-point array"):
        q.LFQ(codebook_size=16)(jnp.zeros((2, 3, 4), jnp.int32))
    rfsq = q.ResidualFSQ(levels=[5, 5], num_quantizers=3)
    with pytest.raises(ValueError, match=r"indices have 2 layers"):
        rfsq.get_output_from_indices(jnp.zeros((2, 3, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"indices must be integer \[\.\.\., Q\], got float32"):
        rfsq.get_codes_from_indices(jnp.zeros((2, 3, 3)))
    glfq = q.GroupedResidualLFQ(dim=8, groups=2, num_quantizers=1, codebook_size=16)
    with pytest.raises(ValueError, match=r"leading group axis of 2, got shape \(3, 2, 5, 1\)"):
        glfq.get_output_from_indices(jnp.zeros((3, 2, 5, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"key is required .*frac_per_sample_entropy < 1"):
        q.GroupedResidualLFQ(
            dim=8, groups=2, num_quantizers=1, codebook_size=16, frac_per_sample_entropy=0.5
        )(jnp.zeros((2, 3, 8)), train=True)


def test_noise_dropout_is_keyed_and_training_only():
    fsq = q.FSQ(levels=[7, 5, 5, 3], preserve_symmetry=True, noise_dropout=0.5)
    x = jax.random.normal(jax.random.key(0), (4, 50, 4))
    run = jax.jit(lambda x, key: fsq(x, train=True, key=key))
    clean = jax.jit(fsq)(x)
    noisy = run(x, jax.random.key(1))
    again = run(x, jax.random.key(1))
    np.testing.assert_array_equal(noisy.indices, clean.indices)  # indices before the noise
    np.testing.assert_array_equal(noisy.quantized, again.quantized)
    changed = np.asarray(noisy.quantized != clean.quantized).mean()
    assert 0.3 < changed < 0.7  # about half the channels got noise
    assert float(jnp.abs(noisy.quantized).max()) <= 1.0


def test_quantize_dropout_keeps_a_prefix_of_layers_and_decodes():
    rfsq = q.ResidualFSQ(levels=[8, 5, 5], num_quantizers=4, quantize_dropout=True)
    x = jax.random.normal(jax.random.key(0), (2, 10, 3))
    kept = set()
    run = jax.jit(lambda x, key: rfsq(x, train=True, key=key))
    for k in range(8):
        out = run(x, jax.random.key(k))
        idx = np.asarray(out.indices)
        n = int((idx[0, 0] >= 0).sum())
        kept.add(n)
        assert (idx[..., :n] >= 0).all() and (idx[..., n:] == -1).all()
        assert (np.asarray(out.counts)[n:] == 0).all()
        np.testing.assert_allclose(
            rfsq.get_output_from_indices(out.indices[..., :n]), out.quantized, atol=1e-6
        )
    assert len(kept) > 2


def test_sampled_per_sample_entropy_is_the_entropy_of_the_sampled_tokens():
    kw = dict(dim=5, codebook_size=32, commitment_loss_weight=0.0)
    sampled = q.LFQ(frac_per_sample_entropy=0.4, **kw)
    full = q.LFQ(**kw)
    x = jax.random.normal(jax.random.key(0), (2, 25, 5)) * 0.3
    key = jax.random.key(5)
    run = jax.jit(lambda x, key: sampled(x, train=True, key=key))
    out = run(x, key)
    chosen = sampled._token_weights(50, None, key).reshape(2, 25) > 0
    assert int(chosen.sum()) == 20  # int(50 * 0.4)
    ref = jax.jit(lambda x, m: full(x, train=True, mask=m))(x, chosen)
    np.testing.assert_allclose(out.per_sample_entropy, ref.per_sample_entropy, rtol=1e-6)
    np.testing.assert_allclose(out.batch_entropy, ref.batch_entropy, rtol=1e-6)
    np.testing.assert_array_equal(out.indices, ref.indices)
    other = run(x, jax.random.key(6))
    assert float(other.per_sample_entropy) != float(out.per_sample_entropy)


def test_usage_statistics():
    fsq = q.FSQ(levels=[3, 3])
    x = jnp.array([[[-5.0, -5.0], [5.0, 5.0], [5.0, 5.0], [0.0, 0.0]]])
    out = jax.jit(fsq)(x)
    np.testing.assert_array_equal(out.indices, [[0, 8, 8, 4]])
    expected = np.zeros(9, np.int32)
    expected[[0, 8, 4]] = [1, 2, 1]
    np.testing.assert_array_equal(out.counts, expected)
    p = np.array([0.25, 0.5, 0.25])
    np.testing.assert_allclose(out.perplexity, np.exp(-(p * np.log(p)).sum()), rtol=1e-6)


@pytest.mark.parametrize(
    "d_in, d_out, bias", [(24, 4, True), (4, 24, True), (3, 20, False), (40, 20, True)]
)
def test_projection_equals_the_linear_and_its_derivatives(d_in, d_out, bias):
    """The quantizers' projection: nnx.Linear's forward bit for bit, and its derivatives
    (reverse mode w.r.t. the input and the parameters, forward mode) within a tolerance; the
    wide 40 -> 20 kernel keeps the Linear itself."""
    layer = nnx.Linear(d_in, d_out, use_bias=bias, rngs=nnx.Rngs(1))
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (5, 33, d_in)) * 3
    w = jax.random.normal(keys[1], (5, 33, d_out))
    np.testing.assert_array_equal(project(layer, x), layer(x))

    graphdef, params = nnx.split(layer)
    fns = (project, lambda m, x: m(x))

    def loss(fn, params, x):
        return jnp.sum(w * fn(nnx.merge(graphdef, params), x) ** 2)

    ours, theirs = (jax.grad(loss, argnums=(1, 2))(fn, params, x) for fn in fns)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert_close(a, b, "projection_grad")
    tangents = jax.tree.map(lambda p: jax.random.normal(keys[2], p.shape), params)
    ours, theirs = (
        jax.jvp(lambda p, fn=fn: fn(nnx.merge(graphdef, p), x), (params,), (tangents,))[1]
        for fn in fns
    )
    assert_close(ours, theirs, "projection_grad")
    dx = w[..., :1] * x
    np.testing.assert_array_equal(
        jax.jvp(lambda x: project(layer, x), (x,), (dx,))[1], jax.jvp(layer, (x,), (dx,))[1]
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: nnx.Linear(24, 4, dtype=jnp.bfloat16, rngs=nnx.Rngs(1)),
        lambda: nnx.Linear(24, 4, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(1)),
        lambda: nnx.Linear(24, 4, use_bias=False, precision="highest", rngs=nnx.Rngs(1)),
        lambda: nnx.Linear(24, 4, preferred_element_type=jnp.float32, rngs=nnx.Rngs(1)),
        lambda: q.CosineSimLinear(24, 4, 2.0, rngs=nnx.Rngs(1)),
    ],
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_projection_keeps_every_layers_forward(make, dtype):
    """Every layer the quantizers project with (dtype and precision settings, LFQ's
    cosine-similarity projection): `project` returns ``layer(x)`` bit for bit, signed zeros
    and dtype included, and `x` itself without a layer."""
    layer = make()
    x = (jax.random.normal(jax.random.key(0), (3, 7, 24)) * 3).astype(dtype)
    x = x.at[0, 0].set(-0.0)
    ours, theirs = project(layer, x), layer(x)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(jnp.signbit(ours), jnp.signbit(theirs))
    assert project(None, x) is x
