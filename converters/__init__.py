"""Converters from PyTorch checkpoints to jaxlatent models (and back).

torch is imported lazily inside the functions that read or write torch files, so importing
this package does not need torch.
"""
