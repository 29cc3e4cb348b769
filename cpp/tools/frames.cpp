#include "frames.hpp"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>

#include "simvos/client.hpp"

namespace fs = std::filesystem;

namespace simvos {

namespace {

//! The text or digit run starting at `at`, digits without their leading zeros.
std::string token(const std::string& text, std::size_t& at, bool& digits) {
  digits = std::isdigit(static_cast<unsigned char>(text[at])) != 0;
  std::string out;
  while (at < text.size() && (std::isdigit(static_cast<unsigned char>(text[at])) != 0) == digits)
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(text[at++])));
  if (digits) out.erase(0, std::min(out.find_first_not_of('0'), out.size() - 1));
  return out;
}

std::string suffix(const fs::path& file) {
  std::string text = file.extension().string();
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

bool is_jpeg(const fs::path& file) { return suffix(file) == ".jpg" || suffix(file) == ".jpeg"; }
bool is_frame(const fs::path& file) { return is_jpeg(file) || suffix(file) == ".png"; }

//! Whether a JPEG's data ends with its EOI marker (FF D9), padding after it allowed.
bool ends_with_eoi(const std::vector<std::uint8_t>& bytes) {
  std::size_t end = bytes.size();
  while (end > 0 && (bytes[end - 1] == 0 || std::isspace(bytes[end - 1]) != 0)) --end;
  return end >= 2 && bytes[end - 2] == 0xff && bytes[end - 1] == 0xd9;
}

std::vector<std::uint8_t> read_file(const fs::path& file) {
  std::ifstream stream(file, std::ios::binary);
  if (!stream) throw InputError("frame " + file.string() + " cannot be read");
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

}  // namespace

bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  bool a_digits = false, b_digits = false;
  while (i < a.size() && j < b.size()) {
    const std::string x = token(a, i, a_digits), y = token(b, j, b_digits);
    if (a_digits != b_digits) return a_digits;  // as Python's key ["", 12, ...] < ["x", ...]: digits first
    if (x != y) return a_digits && x.size() != y.size() ? x.size() < y.size() : x < y;
  }
  return i == a.size() && j < b.size();
}

FrameSource::FrameSource(const fs::path& path, const std::vector<fs::path>& exclude) : path_(path) {
  std::error_code error;
  if (fs::is_directory(path, error)) {
    std::set<fs::path> skip;
    for (const fs::path& file : exclude) skip.insert(fs::weakly_canonical(file, error));
    for (const auto& entry : fs::directory_iterator(path))
      if (entry.is_regular_file() && is_frame(entry.path()) && !skip.count(fs::weakly_canonical(entry.path(), error)))
        files_.push_back(entry.path());
    if (files_.empty()) throw InputError("frames " + path.string() + ": no .jpg/.jpeg/.png frame in this folder");
    std::sort(files_.begin(), files_.end(),
              [](const fs::path& a, const fs::path& b) { return natural_less(a.filename(), b.filename()); });
    std::set<std::string> stems;
    for (const fs::path& file : files_)
      if (!stems.insert(file.stem()).second)
        throw InputError("frames " + path.string() + ": several frames share the name '" + file.stem().string() +
                         "' (e.g. a .jpg and a .png); the output PNGs are named after the frames");
    count_ = files_.size();
  } else if (fs::is_regular_file(path, error)) {
    video_ = true;
    if (!capture_.open(path.string()))
      throw InputError("video " + path.string() + ": OpenCV cannot read this video (or it is not a video)");
    count_ = static_cast<std::size_t>(std::max(0.0, capture_.get(cv::CAP_PROP_FRAME_COUNT)));
  } else {
    throw InputError(path.string() + " does not exist; give a folder of frames or a video file");
  }
}

std::vector<std::string> FrameSource::names() const {
  std::vector<std::string> out;
  for (const fs::path& file : files_) out.push_back(file.stem());
  return out;
}

bool FrameSource::next(std::string& name, cv::Mat& frame) {
  if (!video_) {
    if (index_ == files_.size()) return false;
    const fs::path& file = files_[index_++];
    const std::vector<std::uint8_t> bytes = read_file(file);
    if (is_jpeg(file) && !ends_with_eoi(bytes))  // OpenCV decodes a truncated JPEG to grey rows, with a warning
      throw InputError("frame " + file.string() + " is damaged (a JPEG without its end marker: truncated); "
                       "replace the file");
    frame = cv::imdecode(bytes, cv::IMREAD_COLOR);
    if (frame.empty())
      throw InputError("frame " + file.string() + ": OpenCV cannot decode it (damaged, or not an image); save it as "
                       "a JPEG or PNG");
    name = file.stem();
    return true;
  }
  if (!capture_.read(frame)) {
    if (index_ < count_)
      throw InputError("video " + path_.string() + " ends after " + std::to_string(index_) + " of its " +
                       std::to_string(count_) + " frames (truncated or damaged); repair it, or extract its "
                       "frames to a folder (e.g. with ffmpeg)");
    return false;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%05zu", index_++);
  name = text;
  return true;
}

}  // namespace simvos
