"""jaxlatent: neural autoencoders in JAX/Flax NNX.

The autoencoder and VAE family, vector quantizers and the DAC neural audio codec, with
converters that port pretrained PyTorch checkpoints and parity tests against the originals.

Layout convention: channels-last everywhere inside JAX (`[batch, time, channels]` for
sequences and audio, `[batch, height, width, channels]` for images). PyTorch layouts appear
only in `converters/` and the parity tests.

Importing jaxlatent never imports torch.
"""

__version__ = "0.1.0"
