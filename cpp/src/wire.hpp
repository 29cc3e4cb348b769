// Requests and answers of simvos-serve as KServe v2 messages (simvos_trt/serve/README.md), and the checks
// of what the caller gives; internal to simvos_client.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kserve_v2.pb.h"
#include "simvos/client.hpp"

namespace simvos::wire {

inline constexpr const char* kModel = "simvos";
//! gRPC metadata of each request: a key for sticky routing behind a load balancer (README.md, "Routing").
inline constexpr const char* kRoutingHeader = "x-simvos-video-id";
//! The tensor a request sends back and an answer carries: the video's memory state (protocol.STATE).
inline constexpr const char* kState = "state";

//! A KServe v2 datatype, with the size of one element.
struct DataType {
  const char* name;
  std::size_t item_size;
};
inline constexpr DataType kUint8{"UINT8", 1};
inline constexpr DataType kInt64{"INT64", 8};
inline constexpr DataType kFp32{"FP32", 4};

//! A tensor as sent or answered: its bytes row-major, little-endian.
struct Tensor {
  std::string name, datatype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

//! One request of a video: its parameters and the tensors it carries (`frame`, `mask`: null when absent; `more`:
//! `remove`, the inputs of a resume, `state`).
struct Request {
  std::string video_id;
  bool start = false;
  bool resume = false;
  bool end = false;
  bool return_prob = false;
  bool return_state = false;
  bool bgr = false;
  std::int64_t frame_index = -1;  // -1: not sent, not checked
  const ImageView* frame = nullptr;
  const ImageView* mask = nullptr;
  std::vector<Tensor> more{};
};

//! The answer to a request carrying a frame: the caller's result, and the `state` a resume sends back.
struct FrameAnswer {
  Result result;
  Tensor state;
};

//! The answer to a removal: the objects left, and the `state` a resume sends back.
struct RemovalAnswer {
  std::vector<std::uint8_t> object_ids;
  Tensor state;
};

//! InputError unless `id` is 1..128 printable ASCII characters.
void check_video_id(const std::string& id);
//! InputError unless `frame` is an (H, W, 3) 8-bit image.
void check_frame(const ImageView& frame);
//! InputError unless `mask` is (H, W) 8-bit at the frame's size.
void check_mask(const ImageView& mask, const ImageView& frame);

inference::ModelInferRequest encode(const Request& request);
//! The answer to a request with return_state carrying `frame`; ServeError when it is not what simvos-serve answers.
FrameAnswer decode_frame(const std::string& server, const inference::ModelInferResponse& response,
                         const ImageView& frame, bool return_prob);
//! The answer to a removal with return_state (no labels); ServeError when it is not what simvos-serve answers.
RemovalAnswer decode_removal(const std::string& server, const inference::ModelInferResponse& response);
//! The image's samples, rows packed.
std::string packed(const ImageView& image);

}  // namespace simvos::wire
