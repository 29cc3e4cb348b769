#include "wire.hpp"

#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

namespace simvos::wire {

namespace {

constexpr std::size_t kMaxIdLength = 128;  // protocol.MAX_ID_LENGTH
//! In an expected shape: any size along that axis.
constexpr std::int64_t kAnySize = -1;
//! The largest size along one axis of an answer's tensor (KServe's sizes are int64; no answer of ours comes near).
constexpr std::int64_t kMaxAxisSize = std::numeric_limits<std::int32_t>::max();

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "KServe v2 raw tensors are little-endian");

std::string describe(const ImageView& image) {
  return std::to_string(image.height) + "x" + std::to_string(image.width) + " with " +
         std::to_string(image.channels) + " channel(s) of " + std::to_string(8 * image.bytes_per_channel) + " bits";
}

//! InputError unless `image` is 8-bit with `channels` channels; `expected` names that kind, `fix` says how to get it.
void check_image(const ImageView& image, int channels, const char* what, const char* expected, const char* fix) {
  if (image.data == nullptr || image.height <= 0 || image.width <= 0)
    throw InputError(std::string(what) + ": empty image (no data or a zero size)");
  if (image.channels != channels || image.bytes_per_channel != 1)
    throw InputError(std::string(what) + ": " + describe(image) + ", expected " + expected + "; " + fix);
  const auto row = static_cast<std::uint64_t>(image.width) * static_cast<std::uint64_t>(channels);
  if (image.stride != 0 && image.stride < row)
    throw InputError(std::string(what) + ": stride " + std::to_string(image.stride) + " is shorter than a row (" +
                     std::to_string(row) + " bytes)");
  if (row * static_cast<std::uint64_t>(image.height) > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
    throw InputError(std::string(what) + ": " + describe(image) + " is over 2 GiB, more than one gRPC message holds");
}

void add_input(inference::ModelInferRequest& request, const char* name, const ImageView& image) {
  auto* input = request.add_inputs();
  input->set_name(name);
  input->set_datatype(kUint8.name);
  input->add_shape(image.height);
  input->add_shape(image.width);
  if (image.channels != 1) input->add_shape(image.channels);
  request.add_raw_input_contents(packed(image));
}

void add_input(inference::ModelInferRequest& request, const Tensor& tensor) {
  auto* input = request.add_inputs();
  input->set_name(tensor.name);
  input->set_datatype(tensor.datatype);
  for (const std::int64_t size : tensor.shape) input->add_shape(size);
  request.add_raw_input_contents(tensor.bytes);
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t axis = 0; axis < shape.size(); ++axis) text += (axis > 0 ? ", " : "") + std::to_string(shape[axis]);
  return text + "]";
}

//! Whether `shape` is `expected` (kAnySize there: any size up to kMaxAxisSize).
bool shape_matches(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& expected) {
  if (shape.size() != expected.size()) return false;
  for (std::size_t axis = 0; axis < shape.size(); ++axis) {
    if (shape[axis] < 0 || shape[axis] > kMaxAxisSize) return false;
    if (expected[axis] != kAnySize && shape[axis] != expected[axis]) return false;
  }
  return true;
}

std::uint64_t element_count(const std::vector<std::int64_t>& shape) {
  std::uint64_t count = 1;
  for (const std::int64_t size : shape) count *= static_cast<std::uint64_t>(size);
  return count;
}

//! An output tensor of an answer: its raw bytes (a view into the answer) and its shape as answered.
struct Output {
  std::string_view bytes;
  std::vector<std::int64_t> shape;
};

//! An answer, checked output by output against what simvos-serve answers.
class Answer {
 public:
  Answer(const std::string& server, const inference::ModelInferResponse& response)
      : server_(server), response_(response) {
    if (response.raw_output_contents_size() != response.outputs_size())
      throw bad("the outputs do not carry raw contents (" + std::to_string(response.outputs_size()) +
                " outputs, " + std::to_string(response.raw_output_contents_size()) + " contents)");
  }

  //! Output `name`, checked to be `datatype` of shape `expected` (kAnySize: any size along that axis).
  Output output(const char* name, const DataType& datatype, const std::vector<std::int64_t>& expected) const {
    for (int i = 0; i < response_.outputs_size(); ++i) {
      const auto& output = response_.outputs(i);
      if (output.name() != name) continue;
      std::vector<std::int64_t> shape(output.shape().begin(), output.shape().end());
      const std::string& bytes = response_.raw_output_contents(i);
      const bool fits = output.datatype() == datatype.name && shape_matches(shape, expected) &&
                        bytes.size() == element_count(shape) * datatype.item_size;
      if (!fits)
        throw bad("output '" + std::string(name) + "' is " + output.datatype() + " " + shape_text(shape) + " in " +
                  std::to_string(bytes.size()) + " bytes, expected " + datatype.name + " " + shape_text(expected));
      return {bytes, std::move(shape)};
    }
    throw bad("no output '" + std::string(name) + "'");
  }

  std::vector<std::uint8_t> object_ids() const {
    const Output ids = output("object_ids", kUint8, {kAnySize});
    return {ids.bytes.begin(), ids.bytes.end()};
  }

  //! The `state` output of an answer to return_state, one (1, h, w) map per object, to be sent back as it is.
  Tensor state(std::size_t objects) const {
    Output state = output(kState, kFp32, {static_cast<std::int64_t>(objects), 1, kAnySize, kAnySize});
    return {kState, kFp32.name, std::move(state.shape), std::string(state.bytes)};
  }

 private:
  ServeError bad(const std::string& why) const {
    return ServeError(server_, "server " + server_ + ": unexpected answer: " + why +
                                   "; is it a simvos-serve server of this protocol?");
  }

  const std::string& server_;
  const inference::ModelInferResponse& response_;
};

}  // namespace

std::string packed(const ImageView& image) {
  const std::size_t row = static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.channels);
  const std::size_t stride = image.stride != 0 ? image.stride : row;
  std::string bytes(row * static_cast<std::size_t>(image.height), '\0');
  for (int y = 0; y < image.height; ++y)
    std::memcpy(bytes.data() + static_cast<std::size_t>(y) * row, image.data + static_cast<std::size_t>(y) * stride,
                row);
  return bytes;
}

void check_video_id(const std::string& id) {
  bool printable = !id.empty() && id.size() <= kMaxIdLength;
  for (const char c : id) printable = printable && c >= ' ' && c <= '~';
  if (!printable)
    throw InputError("video id '" + id + "': expected 1.." + std::to_string(kMaxIdLength) +
                     " printable ASCII characters naming the video (a UUID, say)");
}

void check_frame(const ImageView& frame) {
  check_image(frame, 3, "frame", "an 8-bit 3-channel image (H, W, 3)",
              "convert it first (cv::cvtColor to BGR or RGB, cv::Mat::convertTo to CV_8U)");
}

void check_mask(const ImageView& mask, const ImageView& frame) {
  check_image(mask, 1, "mask", "an 8-bit 1-channel image (H, W)",
              "give an index mask of object ids (0 background, objects 1..255)");
  if (mask.height != frame.height || mask.width != frame.width)
    throw InputError("mask: " + std::to_string(mask.height) + "x" + std::to_string(mask.width) +
                     " but the frame is " + std::to_string(frame.height) + "x" + std::to_string(frame.width) +
                     "; give the first frame's mask at the frame's size");
}

inference::ModelInferRequest encode(const Request& request) {
  inference::ModelInferRequest message;
  message.set_model_name(kModel);
  auto& parameters = *message.mutable_parameters();
  parameters["video_id"].set_string_param(request.video_id);
  if (request.start) parameters["start"].set_bool_param(true);
  if (request.end) parameters["end"].set_bool_param(true);
  if (request.return_prob) parameters["return_prob"].set_bool_param(true);
  if (request.bgr) parameters["bgr"].set_bool_param(true);
  if (request.resume) parameters["resume"].set_bool_param(true);
  if (request.return_state) parameters["return_state"].set_bool_param(true);
  if (request.frame_index >= 0) parameters["frame_index"].set_int64_param(request.frame_index);
  if (request.frame != nullptr) add_input(message, "frame", *request.frame);
  if (request.mask != nullptr) add_input(message, "mask", *request.mask);
  for (const Tensor& tensor : request.more) add_input(message, tensor);
  return message;
}

FrameAnswer decode_frame(const std::string& server, const inference::ModelInferResponse& response,
                         const ImageView& frame, bool return_prob) {
  const Answer answer(server, response);
  FrameAnswer decoded;
  Result& result = decoded.result;
  const Output labels = answer.output("labels", kUint8, {frame.height, frame.width});
  result.labels = {frame.height, frame.width, {labels.bytes.begin(), labels.bytes.end()}};
  result.object_ids = answer.object_ids();
  const std::size_t objects = result.object_ids.size();
  if (return_prob) {
    const auto maps = static_cast<std::int64_t>(objects) + 1;  // the background's, then each object's
    const Output prob = answer.output("prob", kFp32, {maps, frame.height, frame.width});
    result.prob.resize(prob.bytes.size() / sizeof(float));
    std::memcpy(result.prob.data(), prob.bytes.data(), prob.bytes.size());
  }
  decoded.state = answer.state(objects);
  return decoded;
}

RemovalAnswer decode_removal(const std::string& server, const inference::ModelInferResponse& response) {
  const Answer answer(server, response);
  RemovalAnswer decoded;
  decoded.object_ids = answer.object_ids();
  decoded.state = answer.state(decoded.object_ids.size());
  return decoded;
}

}  // namespace simvos::wire
