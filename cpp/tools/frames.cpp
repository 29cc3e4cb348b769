#include "frames.hpp"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>

#include "file_io.hpp"

namespace fs = std::filesystem;

namespace simvos {

namespace {

bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

//! A run of digits or of other characters in a name, as natural_less compares them.
struct Token {
  std::string text;  // lower case; a number without its leading zeros ("0" for zero)
  bool is_number = false;
};

//! The token starting at `at`, which is moved past it.
Token next_token(const std::string& name, std::size_t& at) {
  Token token;
  token.is_number = is_digit(name[at]);
  while (at < name.size() && is_digit(name[at]) == token.is_number)
    token.text += static_cast<char>(std::tolower(static_cast<unsigned char>(name[at++])));
  if (token.is_number) token.text.erase(0, std::min(token.text.find_first_not_of('0'), token.text.size() - 1));
  return token;
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

}  // namespace

bool natural_less(const std::string& a, const std::string& b) {
  std::size_t in_a = 0, in_b = 0;
  while (in_a < a.size() && in_b < b.size()) {
    const Token x = next_token(a, in_a), y = next_token(b, in_b);
    if (x.is_number != y.is_number) return x.is_number;  // as Python's key ["", 12, ...] < ["x", ...]: numbers first
    if (x.text == y.text) continue;
    if (x.is_number && x.text.size() != y.text.size()) return x.text.size() < y.text.size();  // fewer digits: smaller
    return x.text < y.text;
  }
  return in_a == a.size() && in_b < b.size();  // a ran out of tokens first
}

std::string video_frame_name(std::size_t index) {
  char name[32];
  std::snprintf(name, sizeof name, "%05zu", index);
  return name;
}

ImageView image_view(const cv::Mat& image) {
  return {image.data, image.rows, image.cols, image.channels(), static_cast<int>(image.elemSize1()), image.step};
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
    const std::vector<std::uint8_t> bytes = read_file(file.string());
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
  name = video_frame_name(index_++);
  return true;
}

}  // namespace simvos
