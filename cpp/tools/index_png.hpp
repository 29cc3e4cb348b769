// Index PNGs (DAVIS-style palette masks) for simvos-segment-cpp: read with libpng, written byte for byte
// as simvos_trt.runtime.png writes them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "simvos/client.hpp"

namespace simvos::png {

inline constexpr int kPaletteEntries = 256;  // one per 8-bit index
using Palette = std::array<std::uint8_t, 3 * kPaletteEntries>;  // RGB per index

//! An index PNG: its labels, and its palette if it is a palette PNG (`palette_size` entries; 0: grayscale).
struct IndexImage {
  Labels labels;
  Palette palette{};
  int palette_size = 0;
};

//! The DAVIS / PASCAL VOC palette: 1 -> (128, 0, 0), 2 -> (0, 128, 0), ...
Palette davis_palette();
//! The indices (and palette) of a palette or grayscale PNG of at most 8 bits; InputError otherwise.
IndexImage read_index_png(const std::string& path);
//! `labels` as an 8-bit palette PNG, the DAVIS palette overwritten by the first `size` entries of `palette`;
//! the same bytes as simvos_trt.runtime.png.encode_index_png (no filter, zlib level 1 with Z_RLE, memLevel 9,
//! one IDAT) when both use the same zlib.
std::string encode_index_png(const Labels& labels, const Palette& palette, int size);
//! encode_index_png written to `path` atomically (a temporary file beside it, renamed).
void write_index_png(const std::string& path, const Labels& labels, const Palette& palette, int size);

}  // namespace simvos::png
