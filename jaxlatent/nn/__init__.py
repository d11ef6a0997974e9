"""Building blocks with PyTorch semantics on channels-last arrays (converter targets)."""

from jaxlatent.nn.batch_norm import BatchNorm as BatchNorm
from jaxlatent.nn.conv import Conv1d as Conv1d
from jaxlatent.nn.conv import Conv2d as Conv2d
from jaxlatent.nn.conv import ConvTranspose1d as ConvTranspose1d
from jaxlatent.nn.conv import ConvTranspose2d as ConvTranspose2d
from jaxlatent.nn.folded import FoldedConv as FoldedConv
from jaxlatent.nn.folded import fold_convolutions as fold_convolutions
from jaxlatent.nn.weight_norm import WNConv1d as WNConv1d
from jaxlatent.nn.weight_norm import WNConv2d as WNConv2d
from jaxlatent.nn.weight_norm import WNConvTranspose1d as WNConvTranspose1d
from jaxlatent.nn.weight_norm import WNConvTranspose2d as WNConvTranspose2d
from jaxlatent.nn.weight_norm import weight_norm_kernel as weight_norm_kernel

# isort: split
# global_norm.py, speechbrain_conv.py (SpeechBrain autoencoders)
from jaxlatent.nn.global_norm import GlobalNorm as GlobalNorm
from jaxlatent.nn.speechbrain_conv import SpeechBrainConv1d as SpeechBrainConv1d
