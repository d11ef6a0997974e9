"""The Descript Audio Codec (DAC) in Flax NNX, channels-last.

Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN" (arXiv:2306.06546);
reference: descript-audio-codec 1.0.0 (``dac``) and SpeechBrain 1.1.2
``speechbrain.lobes.models.discrete.dac``. Checkpoints convert with :mod:`converters.dac`;
a converted model is saved and restored without torch by :func:`save_converted` /
:func:`load_converted` (:mod:`jaxlatent.models.dac.store`).
"""

# codec.py, config.py, layers.py, model.py, receptive.py, store.py (sin_squared.py: Snake's
# fast sin**2; windowed.py: exact windows of the encoder/decoder)
from jaxlatent.models.dac.codec import Decoder as Decoder
from jaxlatent.models.dac.codec import Encoder as Encoder
from jaxlatent.models.dac.config import DACConfig as DACConfig
from jaxlatent.models.dac.layers import DecoderBlock as DecoderBlock
from jaxlatent.models.dac.layers import EncoderBlock as EncoderBlock
from jaxlatent.models.dac.layers import ResidualUnit as ResidualUnit
from jaxlatent.models.dac.layers import Snake1d as Snake1d
from jaxlatent.models.dac.layers import init_weights as init_weights
from jaxlatent.models.dac.layers import snake as snake
from jaxlatent.models.dac.model import DAC as DAC
from jaxlatent.models.dac.model import DACEncoded as DACEncoded
from jaxlatent.models.dac.model import DACOutput as DACOutput
from jaxlatent.models.dac.receptive import ReceptiveField as ReceptiveField
from jaxlatent.models.dac.receptive import receptive_field as receptive_field
from jaxlatent.models.dac.store import ConvertedModelError as ConvertedModelError
from jaxlatent.models.dac.store import is_converted_dir as is_converted_dir
from jaxlatent.models.dac.store import load_converted as load_converted
from jaxlatent.models.dac.store import save_converted as save_converted

# isort: split
# discriminator.py, discriminator_config.py (the GAN discriminator of DAC's training recipe)
from jaxlatent.models.dac.discriminator import MPD as MPD
from jaxlatent.models.dac.discriminator import MRD as MRD
from jaxlatent.models.dac.discriminator import MSD as MSD
from jaxlatent.models.dac.discriminator import Discriminator as Discriminator
from jaxlatent.models.dac.discriminator import DiscriminatorOutput as DiscriminatorOutput
from jaxlatent.models.dac.discriminator_config import DiscriminatorConfig as DiscriminatorConfig
