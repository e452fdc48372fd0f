// The constants the Python side shares with the kernels. module.cpp exports every one of them
// (fastmask._C.STREAM_VERSION, PURPOSES, DTYPE_CODES, WORD_CODES, WORD_SOURCES) and
// fastmask/cpp/__init__.py checks them against fastmask._rng, its own dtype table and
// fastmask.words at import, so a stale or mismatched build fails loudly instead of drawing other bits.
#pragma once

#include <cstdint>

namespace fastmask {

// fastmask._rng.STREAM_VERSION: bump both when any op's bits change (docs/rng.md).
constexpr int kStreamVersion = 1;

// fastmask._rng.Purpose, the counter word c1 (docs/rng.md). Append; never renumber.
enum Purpose : uint32_t {
  kPurposeRaw = 0,
  kPurposeMlmTokens = 1,
  kPurposeWholeWord = 2,
  kPurposeSpans = 3,
  kPurposeT5Spans = 4,
  kPurposeUl2Denoiser = 5,
  kPurposeBlockMask = 6,
  kPurposePatchShuffle = 7,
  kPurposeBlockTopUp = 8,
  kPurposePermutation = 9,
  // 10 UNILM_OBJECTIVE and 13 FEATURES are drawn by torch ops only (no C++ twin).
  kPurposeEdges = 11,
  kPurposePaths = 12,
};

// Dtype codes: the Python side passes one with every raw pointer (fastmask/cpp/__init__.py).
enum DType : int { kInt32 = 0, kInt64 = 1, kFloat32 = 2, kFloat16 = 3, kBFloat16 = 4, kFloat64 = 5, kBool = 6, kUInt8 = 7 };

// Per-token word codes (fastmask.words): CONTINUES, STARTS, NO_WORD.
enum WordCode : uint8_t { kWordContinues = 0, kWordStarts = 1, kNoWord = 2 };

// The forms of mask_tokens' `words` argument (masking.h explains each).
enum WordSource : int { kNoWordSource = 0, kWordCodes = 1, kWordIds = 2, kWordOffsets = 3, kWordTable = 4 };

}  // namespace fastmask
