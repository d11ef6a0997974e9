"""Complete models built from jaxlatent's layers (e.g. the DAC codec in `jaxlatent.models.dac`)."""
