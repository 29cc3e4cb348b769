// Requests and answers of simvos-serve as KServe v2 messages (simvos_trt/serve/README.md), and the checks
// of what the caller gives; internal to simvos_client.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kserve_v2.pb.h"
#include "simvos/client.hpp"

namespace simvos::wire {

inline constexpr const char* kModel = "simvos";
//! gRPC metadata of each request: a key for sticky routing behind a load balancer (README.md, "Routing").
inline constexpr const char* kRoutingHeader = "x-simvos-video-id";

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

void check_video_id(const std::string& id);
//! InputError unless `frame` is an (H, W, 3) 8-bit image.
void check_frame(const ImageView& frame, const char* what);
//! InputError unless `mask` is (H, W) 8-bit at the frame's size.
void check_mask(const ImageView& mask, const ImageView& frame);

inference::ModelInferRequest encode(const Request& request);
//! The answer to a request carrying `frame` (and its `state` output, when asked for, into `state`); ServeError
//! when it is not what simvos-serve answers.
Result decode(const std::string& server, const inference::ModelInferResponse& response, const ImageView& frame,
              bool return_prob, Tensor* state = nullptr);
//! The object ids of an answer without labels (a removal), and its `state` output, when asked for, into `state`.
std::vector<std::uint8_t> decode_ids(const std::string& server, const inference::ModelInferResponse& response,
                                     Tensor* state = nullptr);
//! The image's samples, rows packed.
std::string packed(const ImageView& image);

}  // namespace simvos::wire
