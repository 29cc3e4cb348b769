#include "index_png.hpp"

#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "file_io.hpp"

namespace simvos::png {

namespace {

//! libpng's reading state; the functions holding setjmp keep only plain data (libpng leaves by longjmp).
struct Reader {
  const std::vector<std::uint8_t>* bytes = nullptr;
  std::size_t position = 0;
  png_structp png = nullptr;
  png_infop info = nullptr;
  char error[256] = "";
};

void on_error(png_structp png, png_const_charp message) {
  auto* reader = static_cast<Reader*>(png_get_error_ptr(png));
  std::snprintf(reader->error, sizeof reader->error, "%s", message);
  std::longjmp(png_jmpbuf(png), 1);
}

void on_warning(png_structp, png_const_charp) {}

void on_read(png_structp png, png_bytep out, png_size_t size) {
  auto* reader = static_cast<Reader*>(png_get_io_ptr(png));
  if (reader->bytes->size() - reader->position < size) png_error(png, "the file ends too early (truncated)");
  std::memcpy(out, reader->bytes->data() + reader->position, size);
  reader->position += size;
}

bool read_header(Reader& reader) {
  if (setjmp(png_jmpbuf(reader.png))) return false;
  png_set_read_fn(reader.png, &reader, on_read);
  png_read_info(reader.png, reader.info);
  return true;
}

bool read_rows(Reader& reader, png_bytepp rows) {
  if (setjmp(png_jmpbuf(reader.png))) return false;
  png_read_image(reader.png, rows);
  png_read_end(reader.png, nullptr);
  return true;
}

//! Sets libpng up to deliver one byte per pixel as Pillow's "P", "L" or "1" modes hold it; InputError otherwise.
void choose_format(const std::string& path, png_structp png, png_infop info) {
  const int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (depth > 8)
    throw InputError(path + " is an image of more than 8 bits, not an index mask; save it as a palette PNG (as "
                            "DAVIS annotations are) or an 8-bit grayscale PNG of object ids");
  if (type != PNG_COLOR_TYPE_PALETTE && type != PNG_COLOR_TYPE_GRAY)
    throw InputError(path + " is a colour image, not an index mask; save it as a palette PNG (as DAVIS "
                            "annotations are) or an 8-bit grayscale PNG of object ids");
  if (type == PNG_COLOR_TYPE_GRAY && depth > 1 && depth < 8)
    png_set_expand_gray_1_2_4_to_8(png);  // Pillow's "L": 2-bit 1 -> 85, 4-bit 1 -> 17
  else if (depth < 8)
    png_set_packing(png);  // palette indices and 1-bit masks unpacked as they are (Pillow's "P" and "1")
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
}

// The zlib settings of runtime/png.py: level 1, a 32 KiB window (15 bits), memLevel 9, run-length matching.
constexpr int kDeflateLevel = 1;
constexpr int kDeflateWindowBits = 15;
constexpr int kDeflateMemLevel = 9;

constexpr std::size_t kChunkTypeLength = 4;
// IHDR's fields after the width and height: 8-bit indices of a palette image, deflate, PNG's one filter method
// (its filter type is chosen per row), no interlace.
constexpr char kBitDepth = 8;
constexpr char kColourTypePalette = 3;
constexpr char kCompressionDeflate = 0;
constexpr char kFilterMethod = 0;
constexpr char kNoInterlace = 0;
constexpr char kRowFilterNone = 0;  // the filter type at the start of each row

//! A zlib stream set up as runtime/png.py's compressor, ended when destroyed.
struct Deflater {
  z_stream stream{};
  Deflater() {
    if (deflateInit2(&stream, kDeflateLevel, Z_DEFLATED, kDeflateWindowBits, kDeflateMemLevel, Z_RLE) != Z_OK)
      throw Error("zlib: deflateInit2 failed");
  }
  ~Deflater() { deflateEnd(&stream); }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;
};

//! Appends `value` big-endian, as PNG stores its integers.
void put_u32(std::string& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((value >> shift) & 0xff);
}

//! Appends a chunk: the length of `data`, `type`, `data`, and the CRC of type and data.
void put_chunk(std::string& out, const char* type, std::string_view data) {
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = out.size();
  out.append(type, kChunkTypeLength);
  out.append(data);
  const auto* checked = reinterpret_cast<const Bytef*>(out.data() + start);
  put_u32(out, static_cast<std::uint32_t>(crc32(0, checked, static_cast<uInt>(kChunkTypeLength + data.size()))));
}

std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace

//! Entry i takes bit k of i's bit triples (red, green, blue) as bit 7 - k of each channel: VOC's devkit code.
Palette davis_palette() {
  Palette palette{};
  for (int index = 0; index < kPaletteEntries; ++index)
    for (int bit = 0; bit < 3; ++bit)
      for (int channel = 0; channel < 3; ++channel)
        palette[3 * index + channel] |= static_cast<std::uint8_t>(((index >> (3 * bit + channel)) & 1) << (7 - bit));
  return palette;
}

IndexImage read_index_png(const std::string& path) {
  const std::vector<std::uint8_t> bytes = read_file(path);
  if (bytes.size() < 8 || png_sig_cmp(bytes.data(), 0, 8) != 0)
    throw InputError("cannot read " + path + " as a PNG; give the index mask as a PNG (masks must be lossless)");
  Reader reader;
  reader.bytes = &bytes;
  reader.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_error, on_warning);
  reader.info = reader.png ? png_create_info_struct(reader.png) : nullptr;
  struct Release {
    Reader& reader;
    ~Release() { png_destroy_read_struct(&reader.png, &reader.info, nullptr); }
  } release{reader};
  if (reader.info == nullptr) throw Error("libpng: out of memory");
  if (!read_header(reader)) throw InputError("cannot read " + path + " as an image (" + reader.error + ")");
  choose_format(path, reader.png, reader.info);
  IndexImage image;
  image.labels.height = static_cast<int>(png_get_image_height(reader.png, reader.info));
  image.labels.width = static_cast<int>(png_get_image_width(reader.png, reader.info));
  if (png_get_rowbytes(reader.png, reader.info) != static_cast<std::size_t>(image.labels.width))
    throw InputError(path + ": not one byte per pixel after unpacking; save it as an 8-bit palette PNG");
  image.labels.data.resize(static_cast<std::size_t>(image.labels.height) * image.labels.width);
  std::vector<png_bytep> rows(image.labels.height);
  for (int y = 0; y < image.labels.height; ++y)
    rows[y] = image.labels.data.data() + static_cast<std::size_t>(y) * image.labels.width;
  if (!read_rows(reader, rows.data())) throw InputError("cannot read " + path + " as an image (" + reader.error + ")");
  png_colorp entries = nullptr;
  int count = 0;
  if (png_get_color_type(reader.png, reader.info) == PNG_COLOR_TYPE_PALETTE &&
      png_get_PLTE(reader.png, reader.info, &entries, &count) == PNG_INFO_PLTE) {
    image.palette_size = std::min(count, kPaletteEntries);
    for (int i = 0; i < image.palette_size; ++i) {
      image.palette[3 * i] = entries[i].red;
      image.palette[3 * i + 1] = entries[i].green;
      image.palette[3 * i + 2] = entries[i].blue;
    }
  }
  return image;
}

std::string encode_index_png(const Labels& labels, const Palette& palette, int size) {
  Palette full = davis_palette();
  std::copy_n(palette.begin(), 3 * std::clamp(size, 0, kPaletteEntries), full.begin());
  std::string out("\x89PNG\r\n\x1a\n", 8);  // the PNG signature
  std::string header;
  put_u32(header, static_cast<std::uint32_t>(labels.width));
  put_u32(header, static_cast<std::uint32_t>(labels.height));
  header += {kBitDepth, kColourTypePalette, kCompressionDeflate, kFilterMethod, kNoInterlace};
  put_chunk(out, "IHDR", header);
  put_chunk(out, "PLTE", as_text(full.data(), full.size()));
  // Each row: its filter type (none), then its indices; deflated with run-length matching, as runtime/png.py does.
  const std::size_t width = static_cast<std::size_t>(labels.width);
  std::vector<std::uint8_t> raw((width + 1) * static_cast<std::size_t>(labels.height), kRowFilterNone);
  for (int y = 0; y < labels.height; ++y)
    std::copy_n(labels.data.data() + y * width, width, raw.data() + y * (width + 1) + 1);
  Deflater deflater;
  std::vector<std::uint8_t> compressed(deflateBound(&deflater.stream, static_cast<uLong>(raw.size())));
  deflater.stream.next_in = raw.data();
  deflater.stream.avail_in = static_cast<uInt>(raw.size());
  deflater.stream.next_out = compressed.data();
  deflater.stream.avail_out = static_cast<uInt>(compressed.size());
  if (deflate(&deflater.stream, Z_FINISH) != Z_STREAM_END) throw Error("zlib: deflate did not finish");
  put_chunk(out, "IDAT", as_text(compressed.data(), deflater.stream.total_out));  // one IDAT, as runtime/png.py
  put_chunk(out, "IEND", {});
  return out;
}

void write_index_png(const std::string& path, const Labels& labels, const Palette& palette, int size) {
  write_atomic(path, encode_index_png(labels, palette, size));
}

}  // namespace simvos::png
