"""Vector quantizers: exact chunked nearest-code search, straight-through gradients, codebook
statistics, the rotation trick estimator (`rotation_trick`), the generic `VectorQuantizer`
(gradient or EMA codebook) with its residual forms `ResidualVQ` and `GroupedResidualVQ`, and
the implicit-codebook
families of vector-quantize-pytorch 1.32.0 under its class names: `FSQ`, `ResidualFSQ`,
`GroupedResidualFSQ` (finite scalar quantization) and `LFQ`, `ResidualLFQ`,
`GroupedResidualLFQ` (lookup-free quantization), and `SimVQ`, `ResidualSimVQ` (a frozen
codebook through a learned linear map); their state_dicts convert both ways with
`converters.vector_quantize`.

Quantizers ported from a particular model keep their reference's names in a namespace of their
own, and are not re-exported here:

* :mod:`jaxlatent.quantizers.dac`: DAC's `VectorQuantize` and `ResidualVectorQuantize`
  (descript-audio-codec 1.0.0 ``dac.nn.quantize``);
* :mod:`jaxlatent.quantizers.piq`: SpeechBrain PIQ's class-partitioned `VQEmbedding` and
  `VectorQuantization` (``speechbrain.lobes.models.PIQ``).

The PyTorch-VAE VQ-VAE's quantizer is `jaxlatent.models.pytorch_vae.VQVAEQuantizer`.
"""

# codebook_ops.py, ema.py (the generic VectorQuantizer)
from jaxlatent.quantizers.codebook_ops import kmeans as kmeans
from jaxlatent.quantizers.codebook_ops import restart_dead_codes as restart_dead_codes
from jaxlatent.quantizers.codebook_ops import sample_global_rows as sample_global_rows
from jaxlatent.quantizers.ema import CodebookEMA as CodebookEMA
from jaxlatent.quantizers.ema import VectorQuantizer as VectorQuantizer
from jaxlatent.quantizers.ema import VectorQuantizerConfig as VectorQuantizerConfig
from jaxlatent.quantizers.ema import VectorQuantizerOutput as VectorQuantizerOutput

# fsq.py, residual_fsq.py, lfq.py, residual_lfq.py (implicit codebooks)
from jaxlatent.quantizers.fsq import FSQ as FSQ
from jaxlatent.quantizers.fsq import FSQOutput as FSQOutput
from jaxlatent.quantizers.lfq import LFQ as LFQ
from jaxlatent.quantizers.lfq import CosineSimLinear as CosineSimLinear
from jaxlatent.quantizers.lfq import LFQOutput as LFQOutput
from jaxlatent.quantizers.residual_fsq import GroupedResidualFSQ as GroupedResidualFSQ
from jaxlatent.quantizers.residual_fsq import ResidualFSQ as ResidualFSQ
from jaxlatent.quantizers.residual_fsq import ResidualFSQOutput as ResidualFSQOutput
from jaxlatent.quantizers.residual_lfq import GroupedResidualLFQ as GroupedResidualLFQ
from jaxlatent.quantizers.residual_lfq import ResidualLFQ as ResidualLFQ
from jaxlatent.quantizers.residual_lfq import ResidualLFQOutput as ResidualLFQOutput

# sim_vq.py, residual_sim_vq.py
from jaxlatent.quantizers.residual_sim_vq import ResidualSimVQ as ResidualSimVQ
from jaxlatent.quantizers.residual_sim_vq import ResidualSimVQOutput as ResidualSimVQOutput

# residual_vq.py (over VectorQuantizer)
from jaxlatent.quantizers.residual_vq import GroupedResidualVQ as GroupedResidualVQ
from jaxlatent.quantizers.residual_vq import ResidualVQ as ResidualVQ
from jaxlatent.quantizers.residual_vq import ResidualVQOutput as ResidualVQOutput

# rotation.py
from jaxlatent.quantizers.rotation import rotation_trick as rotation_trick

# search.py
from jaxlatent.quantizers.search import default_chunks as default_chunks
from jaxlatent.quantizers.search import l2_normalize as l2_normalize
from jaxlatent.quantizers.search import lookup_codes as lookup_codes
from jaxlatent.quantizers.search import nearest_code as nearest_code
from jaxlatent.quantizers.sim_vq import SimVQ as SimVQ
from jaxlatent.quantizers.sim_vq import SimVQOutput as SimVQOutput

# stats.py
from jaxlatent.quantizers.stats import CodebookStats as CodebookStats
from jaxlatent.quantizers.stats import code_counts as code_counts
from jaxlatent.quantizers.stats import codebook_stats as codebook_stats
from jaxlatent.quantizers.stats import dead_code_fraction as dead_code_fraction
from jaxlatent.quantizers.stats import perplexity as perplexity

# straight_through.py
from jaxlatent.quantizers.straight_through import straight_through as straight_through
