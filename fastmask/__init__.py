"""fastmask: fast, reproducible masking and masked-LM losses for PyTorch."""
from . import _library  # registers the fastmask:: custom ops
from ._rng import STREAM_VERSION, Purpose
from .cpp import HAS_CPP
from . import nn
from .image import PatchMask, block_mask, gather_kept, random_patch_mask, restore, simmim_mask, tube_mask
from .t5 import UL2_DENOISERS, UL2Denoised, t5_lengths, t5_output_lengths, t5_span_corruption, ul2_denoise
from .functional import MaskedTokens, mask_tokens, masked_cross_entropy, masked_lm_loss, random_words
from .words import word_start_table
from .spans import mask_spans
from . import collators
from .collators import DeviceMasker

__version__ = "0.1.0"
__all__ = ["DeviceMasker", "collators", "PatchMask", "block_mask", "gather_kept", "random_patch_mask", "restore", "simmim_mask", "tube_mask", "UL2_DENOISERS", "UL2Denoised", "t5_lengths", "t5_output_lengths", "t5_span_corruption", "ul2_denoise", "HAS_CPP", "STREAM_VERSION", "MaskedTokens", "Purpose", "mask_tokens", "masked_cross_entropy", "masked_lm_loss", "mask_spans", "nn", "random_words", "word_start_table"]
