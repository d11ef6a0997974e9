"""DAC VectorQuantize / ResidualVectorQuantize vs both PyTorch references.

References: the official `dac.nn.quantize` (descript-audio-codec 1.0.0; legacy weight-norm keys
``weight_g``/``weight_v``) and SpeechBrain 1.1.2 `speechbrain.lobes.models.discrete.dac`
(parametrizations keys). Weights are random (torch's own initialisation, with weight-norm
magnitudes rescaled so that ``g != ‖v‖``) and copied with the production converter
(`converters.dac_quantizer`), whose reverse direction must reproduce the state_dict exactly.

Compared on random inputs: codes exactly; z, latents and both losses within the named
tolerances; gradients of ``commitment + codebook + Σ w·z`` w.r.t. every parameter (the ``w·z``
term reaches the output projections and the straight-through path).

Training mode (quantizer dropout): torch draws the depths with the global
``torch.randint(1, n_codebooks + 1, (batch,))`` and gives them to its first
``int(batch * quantizer_dropout)`` items. The test monkeypatches ``torch.randint`` (for that one
call, whose arguments are checked) to return jaxlatent's draw for the same key (obtained as
``dropout_depths(key, batch, n, 1.0)``, where every item is dropped), so torch applies its own
slicing rule to the same random numbers; the key is chosen so that every dropped item, and the
first kept one, would be truncated (depth < n_codebooks, one of them 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import dac_quantizer as conv
from converters import errors
from jaxlatent.quantizers import dac as dac_q
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

INPUT_DIM, N_CODEBOOKS, CODEBOOK_SIZE, CODEBOOK_DIM = 12, 4, 64, (4, 8, 4, 2)
BATCH, TIME = 6, 20


def _torch_rvq(reference: str, quantizer_dropout: float):
    torch = ref.torch()
    module = ref.dac_quantize() if reference == "dac" else ref.sb_dac()
    torch.manual_seed(0)
    rvq = module.ResidualVectorQuantize(
        INPUT_DIM, N_CODEBOOKS, CODEBOOK_SIZE, list(CODEBOOK_DIM), quantizer_dropout
    )
    with torch.no_grad():  # magnitudes that differ from ||v||, and non-zero biases
        for name, p in rvq.named_parameters():
            if name.endswith(("weight_g", "original0")):
                p.mul_(torch.empty_like(p).uniform_(0.5, 2.0))
    return rvq


def _jax_rvq(quantizer_dropout: float = 0.0, codebook_size: int = CODEBOOK_SIZE):
    """An abstract (shape-only) target: the converter fills every parameter."""
    return nnx.eval_shape(
        lambda: dac_q.ResidualVectorQuantize(
            INPUT_DIM,
            N_CODEBOOKS,
            codebook_size,
            CODEBOOK_DIM,
            quantizer_dropout,
            vector_chunk=32,  # exercise the chunked search (blocks of 32 of the 120 vectors)
            code_chunk=24,
            rngs=nnx.Rngs(1),
        )
    )


def _convert(trvq, style):
    jrvq = _jax_rvq(trvq.quantizer_dropout)
    state_dict = trvq.state_dict()
    assert conv.load_residual_vector_quantize(jrvq, state_dict) == style
    exported = conv.export_residual_vector_quantize(jrvq, style=style)
    assert exported.keys() == state_dict.keys()
    for k, v in state_dict.items():
        np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)
    return jrvq


def _ncl(x):
    return ref.to_torch(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def _nlc(t):
    return np.moveaxis(ref.to_numpy(t), 1, -1)


def _loss(model, z, w, n_quantizers, train, key):
    out = model(z, n_quantizers, train=train, key=key)
    return out.commitment_loss + out.codebook_loss + jnp.sum(w * out.z), out


_grad = nnx.jit(nnx.grad(_loss, has_aux=True), static_argnames=("n_quantizers", "train"))


def _compare(trvq, jrvq, style, n_quantizers, *, train, rng, key=None):
    """Run both, compare outputs and parameter gradients."""
    z = rng.standard_normal((BATCH, TIME, INPUT_DIM)).astype(np.float32)
    w = rng.standard_normal((BATCH, TIME, INPUT_DIM)).astype(np.float32)

    trvq.train(train)
    trvq.zero_grad()
    t_z, t_codes, t_latents, t_cl, t_cb = trvq(_ncl(z), n_quantizers)
    (t_cl + t_cb + (_ncl(w) * t_z).sum()).backward()

    grads, out = _grad(
        jrvq, jnp.asarray(z), jnp.asarray(w), n_quantizers=n_quantizers, train=train, key=key
    )

    np.testing.assert_array_equal(out.codes, ref.to_numpy(t_codes))
    assert out.codes.dtype == jnp.int32
    assert_close(out.z, _nlc(t_z), "vq_dac_z")
    assert_close(out.latents, _nlc(t_latents), "vq_dac_latents")
    assert_close(out.commitment_loss, ref.to_numpy(t_cl), "vq_dac_loss", err_msg="commitment")
    assert_close(out.codebook_loss, ref.to_numpy(t_cb), "vq_dac_loss", err_msg="codebook")

    flat = {"/".join(map(str, p)): v.get_value() for p, v in nnx.to_flat_state(grads)}
    table = conv.residual_vector_quantize_table(N_CODEBOOKS, style=style)
    for name, param in trvq.named_parameters():  # unused quantizers: no torch grad, zero here
        rule = table[name]
        expected = np.zeros(param.shape, np.float32) if param.grad is None else param.grad
        got = rule.transform.to_torch(np.asarray(flat[rule.jax_path]))
        assert_close(got, np.asarray(expected), "vq_dac_grad", err_msg=name)
    return out


REFERENCES = [("dac", "legacy"), ("speechbrain", "parametrizations")]


@pytest.mark.parametrize("reference,style", REFERENCES)
def test_rvq_eval_matches_reference(rng, reference, style):
    trvq = _torch_rvq(reference, 0.5)
    jrvq = _convert(trvq, style)
    # (all quantizers without masking is the path the training test takes for its last items)
    out = _compare(trvq, jrvq, style, 3, train=False, rng=rng)
    assert out.codes.shape == (BATCH, 3, TIME)
    # from_codes / from_latents against the reference
    codes = rng.integers(0, CODEBOOK_SIZE, (BATCH, 3, TIME))
    t_z, t_zp, _ = trvq.from_codes(ref.to_torch(codes))
    dec = jrvq.from_codes(jnp.asarray(codes, jnp.int32))
    assert_close(dec.z, _nlc(t_z), "vq_dac_z", err_msg="from_codes")
    np.testing.assert_array_equal(dec.z_p, _nlc(t_zp))  # gathered codebook rows: exact
    latents = rng.standard_normal((BATCH, TIME, 15)).astype(np.float32)  # 15 -> 3 codebooks
    t_z, t_zp, t_codes = trvq.from_latents(_ncl(latents))
    dec = jrvq.from_latents(jnp.asarray(latents))
    np.testing.assert_array_equal(dec.codes, ref.to_numpy(t_codes))
    np.testing.assert_array_equal(dec.z_p, _nlc(t_zp))
    assert_close(dec.z, _nlc(t_z), "vq_dac_z", err_msg="from_latents")


def _key_with_varied_depths():
    """A key whose draw truncates every dropped item (depths < n_codebooks, one of them 1,
    not all equal) and would also truncate the first non-dropped item if it were dropped."""
    for seed in range(1000):
        key = jax.random.key(seed)
        # with quantizer_dropout=1.0 every item is dropped: this is the full randint draw
        draw = np.asarray(dac_q.dropout_depths(key, BATCH, N_CODEBOOKS, 1.0))
        dropped = draw[: BATCH // 2 + 1]
        if (dropped < N_CODEBOOKS).all() and 1 in dropped and len(set(dropped.tolist())) > 1:
            return key, draw
    raise AssertionError("no key with varied depths")


@pytest.mark.parametrize("reference,style", REFERENCES)
def test_rvq_train_with_quantizer_dropout_matches_reference(rng, monkeypatch, reference, style):
    torch = ref.torch()
    trvq = _torch_rvq(reference, 0.5)
    jrvq = _convert(trvq, style)
    key, draw = _key_with_varied_depths()
    calls = []

    def fake_randint(low, high, size, **kwargs):
        assert (low, high, tuple(size)) == (1, N_CODEBOOKS + 1, (BATCH,)) and not kwargs
        calls.append(1)
        return torch.from_numpy(draw.astype(np.int64))

    monkeypatch.setattr(torch, "randint", fake_randint)
    # n_quantizers=1 is ignored in training by both
    out = _compare(trvq, jrvq, style, 1, train=True, rng=rng, key=key)
    assert calls == [1]
    assert out.codes.shape == (BATCH, N_CODEBOOKS, TIME)


@pytest.mark.parametrize("reference,style", REFERENCES)
def test_single_vector_quantize_matches_reference(rng, reference, style):
    torch = ref.torch()
    module = ref.dac_quantize() if reference == "dac" else ref.sb_dac()
    torch.manual_seed(1)
    tvq = module.VectorQuantize(INPUT_DIM, CODEBOOK_SIZE, 8)
    jvq = nnx.eval_shape(
        lambda: dac_q.VectorQuantize(INPUT_DIM, CODEBOOK_SIZE, 8, rngs=nnx.Rngs(0))
    )
    assert conv.load_vector_quantize(jvq, tvq.state_dict()) == style
    z = rng.standard_normal((3, TIME, INPUT_DIM)).astype(np.float32)
    t_zq, t_cl, t_cb, t_idx, t_ze = tvq(_ncl(z))
    out = jvq(jnp.asarray(z))
    np.testing.assert_array_equal(out.indices, ref.to_numpy(t_idx))
    assert_close(out.z_q, _nlc(t_zq), "vq_dac_z")
    assert_close(out.z_e, _nlc(t_ze), "vq_dac_latents")
    assert_close(out.commitment_loss, ref.to_numpy(t_cl), "vq_dac_loss")
    assert_close(out.codebook_loss, ref.to_numpy(t_cb), "vq_dac_loss")


def test_converter_is_strict():
    trvq = _torch_rvq("dac", 0.0)
    jrvq = _jax_rvq()
    state_dict = dict(trvq.state_dict())
    del state_dict["quantizers.2.codebook.weight"]
    state_dict["quantizers.9.codebook.weight"] = trvq.state_dict()["quantizers.0.codebook.weight"]
    with pytest.raises(errors.ConversionError) as info:
        conv.load_residual_vector_quantize(jrvq, state_dict)
    assert info.value.missing == ["quantizers.2.codebook.weight -> quantizers/2/codebook"]
    assert info.value.unexpected == ["quantizers.9.codebook.weight"]
    small = _jax_rvq(codebook_size=32)
    with pytest.raises(errors.ConversionError, match="mis-shaped"):
        conv.load_residual_vector_quantize(small, trvq.state_dict())
    with pytest.raises(errors.ConversionError, match="no weight-normalised convolution keys"):
        conv.load_residual_vector_quantize(jrvq, {"quantizers.0.codebook.weight": np.zeros(1)})
