"""SpeechBrain's losses (`speechbrain.nnet.losses`, v1.1.2) in JAX.

Same arguments, reductions (with SpeechBrain's quirks, documented per function), label
smoothing and relative-length masking as the reference; all usable under `jax.jit` and
`jax.grad`. Layouts follow SpeechBrain's, which is already channels-last for sequences
(`[batch, time, features]`).
"""
