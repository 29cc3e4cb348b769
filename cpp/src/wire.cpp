#include "wire.hpp"

#include <cstring>
#include <limits>
#include <vector>

namespace simvos::wire {

namespace {

constexpr std::size_t kMaxIdLength = 128;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "KServe v2 raw tensors are little-endian");

std::string describe(const ImageView& image) {
  return std::to_string(image.height) + "x" + std::to_string(image.width) + " with " +
         std::to_string(image.channels) + " channel(s) of " + std::to_string(8 * image.bytes_per_channel) + " bits";
}

void check_image(const ImageView& image, int channels, const char* what, const char* fix) {
  if (image.data == nullptr || image.height <= 0 || image.width <= 0)
    throw InputError(std::string(what) + ": empty image (no data or a zero size)");
  if (image.channels != channels || image.bytes_per_channel != 1)
    throw InputError(std::string(what) + ": " + describe(image) + ", expected " +
                     (channels == 3 ? "an 8-bit 3-channel image (H, W, 3)" : "an 8-bit 1-channel image (H, W)") +
                     "; " + fix);
  const auto row = static_cast<std::uint64_t>(image.width) * static_cast<std::uint64_t>(channels);
  if (image.stride != 0 && image.stride < row)
    throw InputError(std::string(what) + ": stride " + std::to_string(image.stride) + " is shorter than a row (" +
                     std::to_string(row) + " bytes)");
  if (row * static_cast<std::uint64_t>(image.height) > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
    throw InputError(std::string(what) + ": " + describe(image) + " is over 2 GiB, more than one gRPC message holds");
}

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

namespace {

void add_input(inference::ModelInferRequest& request, const char* name, const ImageView& image) {
  auto* input = request.add_inputs();
  input->set_name(name);
  input->set_datatype("UINT8");
  input->add_shape(image.height);
  input->add_shape(image.width);
  if (image.channels != 1) input->add_shape(image.channels);
  request.add_raw_input_contents(packed(image));
}

class Answer {
 public:
  Answer(const std::string& server, const inference::ModelInferResponse& response)
      : server_(server), response_(response) {
    if (response.raw_output_contents_size() != response.outputs_size())
      throw bad("the outputs do not carry raw contents (" + std::to_string(response.outputs_size()) +
                " outputs, " + std::to_string(response.raw_output_contents_size()) + " contents)");
  }

  //! The bytes of output `name`, checked to be `datatype` of `shape` (-1: any size).
  const std::string& tensor(const char* name, const char* datatype, std::vector<std::int64_t>& shape,
                            std::size_t item) const {
    for (int i = 0; i < response_.outputs_size(); ++i) {
      const auto& output = response_.outputs(i);
      if (output.name() != name) continue;
      const std::vector<std::int64_t> got(output.shape().begin(), output.shape().end());
      bool fits = output.datatype() == datatype && got.size() == shape.size();
      std::uint64_t count = 1;
      for (std::size_t d = 0; fits && d < got.size(); ++d) {
        fits = got[d] >= 0 && got[d] < (1LL << 31) && (shape[d] < 0 || got[d] == shape[d]);
        count *= fits ? static_cast<std::uint64_t>(got[d]) : 0;
      }
      const std::string& bytes = response_.raw_output_contents(i);
      if (!fits || bytes.size() != count * item)
        throw bad("output '" + std::string(name) + "' is " + output.datatype() + " " + shape_text(got) + " in " +
                  std::to_string(bytes.size()) + " bytes, expected " + datatype + " " + shape_text(shape));
      shape = got;
      return bytes;
    }
    throw bad("no output '" + std::string(name) + "'");
  }

  ServeError bad(const std::string& why) const {
    return ServeError(server_, "server " + server_ + ": unexpected answer: " + why +
                                   "; is it a simvos-serve server of this protocol?");
  }

 private:
  static std::string shape_text(const std::vector<std::int64_t>& shape) {
    std::string text = "[";
    for (std::size_t d = 0; d < shape.size(); ++d) text += (d ? ", " : "") + std::to_string(shape[d]);
    return text + "]";
  }

  const std::string& server_;
  const inference::ModelInferResponse& response_;
};

}  // namespace

void check_video_id(const std::string& id) {
  bool printable = !id.empty() && id.size() <= kMaxIdLength;
  for (const char c : id) printable = printable && c >= 0x20 && c < 0x7f;
  if (!printable)
    throw InputError("video id '" + id + "': expected 1.." + std::to_string(kMaxIdLength) +
                     " printable ASCII characters naming the video (a UUID, say)");
}

void check_frame(const ImageView& frame, const char* what) {
  check_image(frame, 3, what, "convert it first (cv::cvtColor to BGR or RGB, cv::Mat::convertTo to CV_8U)");
}

void check_mask(const ImageView& mask, const ImageView& frame) {
  check_image(mask, 1, "mask", "give an index mask of object ids (0 background, objects 1..255)");
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
  for (const Tensor& tensor : request.more) {
    auto* input = message.add_inputs();
    input->set_name(tensor.name);
    input->set_datatype(tensor.datatype);
    for (const std::int64_t d : tensor.shape) input->add_shape(d);
    message.add_raw_input_contents(tensor.bytes);
  }
  return message;
}

Result decode(const std::string& server, const inference::ModelInferResponse& response, const ImageView& frame,
              bool return_prob, Tensor* state) {
  const Answer answer(server, response);
  Result result;
  std::vector<std::int64_t> shape{frame.height, frame.width};
  const std::string& labels = answer.tensor("labels", "UINT8", shape, 1);
  result.labels = {frame.height, frame.width, std::vector<std::uint8_t>(labels.begin(), labels.end())};
  shape = {-1};
  const std::string& ids = answer.tensor("object_ids", "UINT8", shape, 1);
  result.object_ids.assign(ids.begin(), ids.end());
  if (return_prob) {
    shape = {static_cast<std::int64_t>(ids.size()) + 1, frame.height, frame.width};
    const std::string& prob = answer.tensor("prob", "FP32", shape, sizeof(float));
    result.prob.resize(prob.size() / sizeof(float));
    std::memcpy(result.prob.data(), prob.data(), prob.size());
  }
  if (state != nullptr) {
    shape = {static_cast<std::int64_t>(ids.size()), 1, -1, -1};
    const std::string& bytes = answer.tensor("state", "FP32", shape, sizeof(float));
    *state = {"state", "FP32", shape, bytes};
  }
  return result;
}

std::vector<std::uint8_t> decode_ids(const std::string& server, const inference::ModelInferResponse& response,
                                     Tensor* state) {
  const Answer answer(server, response);
  std::vector<std::int64_t> shape{-1};
  const std::string& ids = answer.tensor("object_ids", "UINT8", shape, 1);
  if (state != nullptr) {
    shape = {static_cast<std::int64_t>(ids.size()), 1, -1, -1};
    const std::string& bytes = answer.tensor("state", "FP32", shape, sizeof(float));
    *state = {"state", "FP32", shape, bytes};
  }
  return {ids.begin(), ids.end()};
}

}  // namespace simvos::wire
