"""The Descript Audio Codec (DAC) in Flax NNX, channels-last.

Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN" (arXiv:2306.06546);
reference: descript-audio-codec 1.0.0 (``dac``) and SpeechBrain 1.1.2
``speechbrain.lobes.models.discrete.dac``. Checkpoints convert with :mod:`converters.dac`.
"""

# config.py
from jaxlatent.models.dac.config import DACConfig as DACConfig
