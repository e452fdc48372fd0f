"""fastmask: fast, reproducible masking and masked-LM losses for PyTorch."""
from . import _library  # registers the fastmask:: custom ops
from ._rng import STREAM_VERSION, Purpose
from .cpp import HAS_CPP
from . import nn
from .functional import MaskedTokens, mask_tokens, masked_cross_entropy, masked_lm_loss, random_words

__version__ = "0.1.0"
__all__ = ["HAS_CPP", "STREAM_VERSION", "MaskedTokens", "Purpose", "mask_tokens", "masked_cross_entropy", "masked_lm_loss", "nn", "random_words"]
