// The frames of a folder of images or of a video file, as simvos_trt.runtime.video_io.FrameSource reads them.
#pragma once

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "simvos/client.hpp"

namespace simvos {

//! Frames as (name, (H, W, 3) uint8 BGR): a folder's .jpg/.jpeg/.png files in natural name order (2 before 10;
//! `exclude` left out), named by their stems, or a video's frames, named 00000, 00001, ...
class FrameSource {
 public:
  FrameSource(const std::filesystem::path& path, const std::vector<std::filesystem::path>& exclude);
  //! The next frame; false after the last. InputError for an unreadable image or a truncated video.
  bool next(std::string& name, cv::Mat& frame);
  //! Whether the frames come from a video file (their names are then known only as they are read).
  bool is_video() const { return video_; }
  //! The frames' names, in order (a folder's; empty for a video).
  std::vector<std::string> names() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::vector<std::filesystem::path> files_;
  bool video_ = false;
  cv::VideoCapture capture_;
  std::size_t count_ = 0;  // the number of frames (a video's estimate; 0: unknown)
  std::size_t index_ = 0;  // the next frame's
};

//! The name of a video's frame `index`, as simvos-segment names it: 00000, 00001, ...
std::string video_frame_name(std::size_t index);

//! Whether `a` sorts before `b` comparing digit runs as numbers and the rest case-insensitively.
bool natural_less(const std::string& a, const std::string& b);

//! The library's view of an OpenCV image (not owned: `image` must outlive it).
ImageView image_view(const cv::Mat& image);

}  // namespace simvos
