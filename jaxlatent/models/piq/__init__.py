"""PIQ (Posthoc Interpretation via Quantization) models in Flax NNX, channels-last.

Paissan, Subakan & Ravanelli 2023 (arXiv:2303.12659); reference: SpeechBrain 1.1.2
``speechbrain.lobes.models.PIQ``. `PIQInterpreter` (a classifier and its interpreter trained
in one run) is what ``jaxlatent train --model piq`` trains. The class-partitioned quantizer lives in
:mod:`jaxlatent.quantizers.piq`; checkpoints convert with :mod:`converters.piq`.
"""

# blocks.py, psi.py (SpeechBrain's), classifier.py, interpreter.py (`jaxlatent train`'s PIQ)
from jaxlatent.models.piq.blocks import Conv2dEncoder_v2 as Conv2dEncoder_v2
from jaxlatent.models.piq.blocks import ResBlockAudio as ResBlockAudio
from jaxlatent.models.piq.blocks import weights_init as weights_init
from jaxlatent.models.piq.classifier import PIQClassifier as PIQClassifier
from jaxlatent.models.piq.interpreter import PIQInterpreter as PIQInterpreter
from jaxlatent.models.piq.interpreter import PIQOutput as PIQOutput
from jaxlatent.models.piq.interpreter import (
    codes_in_class_partition as codes_in_class_partition,
)
from jaxlatent.models.piq.interpreter import psi_output_size as psi_output_size
from jaxlatent.models.piq.psi import PSI_DECODER as PSI_DECODER
from jaxlatent.models.piq.psi import PSI_FOCALNET_DECODER as PSI_FOCALNET_DECODER
from jaxlatent.models.piq.psi import PSIDecoder as PSIDecoder
from jaxlatent.models.piq.psi import PSIOutput as PSIOutput
from jaxlatent.models.piq.psi import VectorQuantizedPSI_Audio as VectorQuantizedPSI_Audio
from jaxlatent.models.piq.psi import (
    VectorQuantizedPSIFocalNet_Audio as VectorQuantizedPSIFocalNet_Audio,
)
from jaxlatent.models.piq.psi import VectorQuantizedPSIViT_Audio as VectorQuantizedPSIViT_Audio
