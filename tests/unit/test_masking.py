import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent import masking


def test_rules_disagree_on_adversarial_fraction():
    # float32(7/13) * 13 rounds above 7: the tolerance rule keeps 7 frames, plain ceil keeps 8.
    length = jnp.array([7 / 13], jnp.float32)
    assert int(masking.ceil_tolerance_mask(length, 13).sum()) == 7
    assert int(masking.plain_ceil_mask(length, 13).sum()) == 8


def test_round_is_half_to_even():
    assert masking.round_lengths(jnp.array([0.5, 0.1, 0.3]), 5).tolist() == [2, 0, 2]


@pytest.mark.parametrize("bad", [[1.5], [-0.1], [float("nan")]])
def test_out_of_range_length_raises(bad):
    with pytest.raises(ValueError, match="length"):
        masking.ceil_tolerance_mask(jnp.array(bad), 4)


def test_length_must_be_1d():
    with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
        masking.plain_ceil_mask(jnp.ones((2, 1)), 4)


def test_jit_compatible():
    f = jax.jit(lambda l: masking.clean_padding(jnp.ones((2, 4, 3)), l, len_dim=1))
    out = f(jnp.array([0.5, 1.0]))
    np.testing.assert_array_equal(out.sum(axis=(1, 2)), [6, 12])


def test_make_padding_mask_shape():
    m = masking.make_padding_mask(jnp.zeros((2, 5, 3, 4)), jnp.array([0.4, 1.0]), length_dim=2)
    assert m.shape == (2, 1, 3, 1)
    np.testing.assert_array_equal(m[:, 0, :, 0], [[True, True, False], [True, True, True]])
