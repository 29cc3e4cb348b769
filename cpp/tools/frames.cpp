#include "frames.hpp"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
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

bool is_frame(const fs::path& file) {
  std::string suffix = file.extension().string();
  std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return std::tolower(c); });
  return suffix == ".jpg" || suffix == ".jpeg" || suffix == ".png";
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

FrameSource::FrameSource(const fs::path& path, const fs::path& exclude) : path_(path) {
  std::error_code error;
  if (fs::is_directory(path, error)) {
    const fs::path skip = fs::weakly_canonical(exclude, error);
    for (const auto& entry : fs::directory_iterator(path))
      if (entry.is_regular_file() && is_frame(entry.path()) && fs::weakly_canonical(entry.path(), error) != skip)
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

bool FrameSource::next(std::string& name, cv::Mat& frame) {
  if (!video_) {
    if (index_ == files_.size()) return false;
    const fs::path& file = files_[index_++];
    frame = cv::imread(file.string(), cv::IMREAD_COLOR);
    if (frame.empty())
      throw InputError("frame " + file.string() + ": OpenCV cannot decode it; save it as a JPEG or PNG");
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
