"""Long-audio coding with DAC: ``compress`` / ``decompress`` and the ``.dac`` file format.

Same algorithm and file format as descript-audio-codec 1.0.0 ``dac.model.base``
(``CodecMixin.compress`` / ``decompress``, ``DACFile``), so ``.dac`` files are interchangeable
with the official package, which (unlike this one) executes pickled code when it reads them.
The resampler and loudness meter reproduce the reference's (julius, audiotools) numerics, so
codes match the official ``compress``.
"""

# batch.py (windows of many inputs per model call)
from jaxlatent.codec.batch import BatchEncoder as BatchEncoder

# chunking.py
from jaxlatent.codec.chunking import ChunkPlan as ChunkPlan
from jaxlatent.codec.chunking import chunk_plan as chunk_plan

# compression.py
from jaxlatent.codec.compression import PreparedAudio as PreparedAudio
from jaxlatent.codec.compression import compress as compress
from jaxlatent.codec.compression import decompress as decompress
from jaxlatent.codec.compression import prepare as prepare

# dac_file.py
from jaxlatent.codec.dac_file import DACFile as DACFile
from jaxlatent.codec.dac_file import DACFileError as DACFileError

# exact.py
from jaxlatent.codec.exact import compress_exact as compress_exact
from jaxlatent.codec.exact import decompress_exact as decompress_exact

# streaming.py
from jaxlatent.codec.streaming import StreamingDecoder as StreamingDecoder
from jaxlatent.codec.streaming import StreamingEncoder as StreamingEncoder

# loudness.py and resample.py are used as modules (`jaxlatent.codec.loudness.loudness`,
# `jaxlatent.codec.resample.resample`); their functions are not re-exported here so that the
# function names do not shadow the modules.
