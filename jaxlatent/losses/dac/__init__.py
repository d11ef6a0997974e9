"""descript-audio-codec 1.0.0's training losses (``dac.nn.loss``) in JAX, at parity.

Same class names, constructor arguments and defaults as the reference; arrays are
channels-last ``[batch, time, channels]`` instead of ``AudioSignal``s, and the mel loss takes
the sample rate explicitly. STFTs follow audiotools 0.7.2 (stft.py); mel filterbanks are
librosa's (mel.py, ``pip install ".[losses]"``).

Files: waveform.py (`L1Loss`, `SISDRLoss`), spectral.py (`MultiScaleSTFTLoss`,
`MelSpectrogramLoss`), gan.py (`GANLoss`), stft.py, mel.py.
"""

from jaxlatent.losses.dac.gan import GANLoss as GANLoss
from jaxlatent.losses.dac.mel import mel_filters as mel_filters
from jaxlatent.losses.dac.spectral import MelSpectrogramLoss as MelSpectrogramLoss
from jaxlatent.losses.dac.spectral import MultiScaleSTFTLoss as MultiScaleSTFTLoss
from jaxlatent.losses.dac.stft import stft as stft
from jaxlatent.losses.dac.stft import stft_magnitude as stft_magnitude
from jaxlatent.losses.dac.stft import stft_window as stft_window
from jaxlatent.losses.dac.waveform import L1Loss as L1Loss
from jaxlatent.losses.dac.waveform import SISDRLoss as SISDRLoss
