"""fastmask: fast, reproducible masking and masked-LM losses for PyTorch."""
from . import _library  # noqa: F401  (registers the fastmask:: custom ops)
from ._rng import STREAM_VERSION, Purpose
from .cpp import HAS_CPP
from .functional import MaskedTokens, mask_tokens, masked_cross_entropy, masked_lm_loss, random_words
from .pruning import apply_masks, lottery_ticket, magnitude_masks
from .graph import edge_mask, mask_edges, mask_features, mask_paths, path_mask
from .attention import UniLMObjectives, attention_mask, unilm_objectives
from .permutation import PermutationLM, permutation_lm
from .image import PatchMask, block_mask, gather_kept, random_patch_mask, restore, simmim_mask, tube_mask
from .spans import mask_spans
from .t5 import UL2_DENOISERS, UL2Denoised, t5_chunks, t5_lengths, t5_output_lengths, t5_span_corruption, ul2_denoise
from .words import word_start_table
from ._distillation import masked_distillation_loss
from . import collators, nn
from .collators import DeviceMasker

__version__ = "0.1.0"
__all__ = [
    "UniLMObjectives", "attention_mask", "unilm_objectives",
    "HAS_CPP", "STREAM_VERSION", "Purpose", "DeviceMasker", "MaskedTokens", "PatchMask", "UL2Denoised", "UL2_DENOISERS",
    "PermutationLM", "block_mask", "collators", "gather_kept", "mask_spans", "mask_tokens", "masked_cross_entropy", "masked_lm_loss", "nn",
    "masked_distillation_loss", "permutation_lm",
    "random_patch_mask", "random_words", "restore", "simmim_mask", "t5_chunks", "t5_lengths", "t5_output_lengths", "t5_span_corruption",
    "tube_mask", "ul2_denoise", "word_start_table",
    "apply_masks", "lottery_ticket", "magnitude_masks", "edge_mask", "mask_edges", "mask_features", "mask_paths", "path_mask",
]
