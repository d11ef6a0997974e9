"""Vector quantizers: exact chunked nearest-code search, straight-through gradients, codebook
statistics, and the DAC (residual) vector quantizers.
"""

# search.py
# dac_vq.py
# ema.py, codebook_ops.py
from jaxlatent.quantizers.codebook_ops import kmeans as kmeans
from jaxlatent.quantizers.codebook_ops import restart_dead_codes as restart_dead_codes
from jaxlatent.quantizers.codebook_ops import sample_global_rows as sample_global_rows
from jaxlatent.quantizers.dac_vq import ResidualVectorQuantize as ResidualVectorQuantize
from jaxlatent.quantizers.dac_vq import RVQDecoded as RVQDecoded
from jaxlatent.quantizers.dac_vq import RVQOutput as RVQOutput
from jaxlatent.quantizers.dac_vq import VectorQuantize as VectorQuantize
from jaxlatent.quantizers.dac_vq import VQOutput as VQOutput
from jaxlatent.quantizers.dac_vq import dropout_depths as dropout_depths
from jaxlatent.quantizers.ema import CodebookEMA as CodebookEMA
from jaxlatent.quantizers.ema import VectorQuantizer as VectorQuantizer
from jaxlatent.quantizers.ema import VectorQuantizerConfig as VectorQuantizerConfig
from jaxlatent.quantizers.ema import VectorQuantizerOutput as VectorQuantizerOutput

# piq.py, piq_partition.py (SpeechBrain PIQ's class-partitioned quantizer)
from jaxlatent.quantizers.piq import VectorQuantization as VectorQuantization
from jaxlatent.quantizers.piq import (
    VectorQuantizationStraightThrough as VectorQuantizationStraightThrough,
)
from jaxlatent.quantizers.piq import VQEmbedding as VQEmbedding
from jaxlatent.quantizers.piq import VQEmbeddingOutput as VQEmbeddingOutput
from jaxlatent.quantizers.piq import VQStraightThroughOutput as VQStraightThroughOutput
from jaxlatent.quantizers.piq import vector_quantization as vector_quantization
from jaxlatent.quantizers.piq import (
    vector_quantization_straight_through as vector_quantization_straight_through,
)
from jaxlatent.quantizers.piq_partition import class_of_code as class_of_code
from jaxlatent.quantizers.piq_partition import get_irrelevant_regions as get_irrelevant_regions
from jaxlatent.quantizers.piq_partition import torch_linspace_f32 as torch_linspace_f32
from jaxlatent.quantizers.search import default_chunks as default_chunks
from jaxlatent.quantizers.search import l2_normalize as l2_normalize
from jaxlatent.quantizers.search import lookup_codes as lookup_codes
from jaxlatent.quantizers.search import nearest_code as nearest_code

# stats.py
from jaxlatent.quantizers.stats import CodebookStats as CodebookStats
from jaxlatent.quantizers.stats import code_counts as code_counts
from jaxlatent.quantizers.stats import codebook_stats as codebook_stats
from jaxlatent.quantizers.stats import dead_code_fraction as dead_code_fraction
from jaxlatent.quantizers.stats import perplexity as perplexity

# straight_through.py
from jaxlatent.quantizers.straight_through import straight_through as straight_through
