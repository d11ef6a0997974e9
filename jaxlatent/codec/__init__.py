"""Long-audio coding with DAC: the ``.dac`` file format, ``compress`` / ``decompress``.

Same algorithm and file format as descript-audio-codec 1.0.0 ``dac.model.base``
(``CodecMixin.compress`` / ``decompress``, ``DACFile``), so ``.dac`` files are interchangeable
with the official package, which (unlike this one) executes pickled code when it reads them.
"""

# dac_file.py
# compress.py
from jaxlatent.codec.compress import compress as compress
from jaxlatent.codec.compress import decompress as decompress
from jaxlatent.codec.dac_file import DACFile as DACFile
from jaxlatent.codec.dac_file import DACFileError as DACFileError
