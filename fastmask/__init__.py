"""fastmask: fast, reproducible masking and masked-LM losses for PyTorch."""
from . import _library  # registers the fastmask:: custom ops
from ._rng import STREAM_VERSION, Purpose
from .cpp import HAS_CPP
from .functional import random_words

__version__ = "0.1.0"
__all__ = ["HAS_CPP", "STREAM_VERSION", "Purpose", "random_words"]
