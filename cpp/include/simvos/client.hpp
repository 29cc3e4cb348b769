// simvos_client: the C++ client of simvos-serve (simvos_trt/serve/README.md), over Triton's KServe v2 gRPC
// protocol: the server's gRPC port, HOST:PORT as for the Python client and `simvos-segment --server`.
//
//     simvos::Client client("127.0.0.1:8001");
//     simvos::Video video = client.video();
//     simvos::Result first = video.start(frame0, mask0);   // frame (H, W, 3) uint8 RGB, mask (H, W) uint8 ids
//     simvos::Result next = video.step(frame1);            // next.labels: (H, W) uint8, the mask's own ids
//     video.end();                                         // or let the Video go out of scope
//
// A Client is thread-safe and cheap to share; a Video is one sequence of requests (use it from one thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace inference {  // the KServe v2 messages (generated; private to the library)
class ModelInferResponse;
}

namespace simvos {

namespace wire {  // the library's requests (private)
struct Request;
struct Tensor;
}  // namespace wire

//! Any error of this library.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

//! Bad input found before anything is sent (a frame that is not 8-bit 3-channel, a bad address, ...).
class InputError : public Error {
 public:
  using Error::Error;
};

//! The server refused a request, could not be reached, or answered something that is not simvos-serve's.
class ServeError : public Error {
 public:
  ServeError(const std::string& server, const std::string& what, std::string server_message = {});
  //! HOST:PORT of the server concerned.
  const std::string& server() const noexcept { return server_; }
  //! The server's own reason (its text after "simvos-serve error: "), empty when the server gave none.
  const std::string& server_message() const noexcept { return server_message_; }

 private:
  std::string server_, server_message_;
};

//! An image in the caller's memory, not owned: `height` rows of `width * channels` samples, row-major,
//! each row `stride` bytes after the previous one (0: rows packed). An OpenCV cv::Mat m maps to
//! {m.data, m.rows, m.cols, m.channels(), static_cast<int>(m.elemSize1()), m.step}.
struct ImageView {
  const std::uint8_t* data = nullptr;
  int height = 0;
  int width = 0;
  int channels = 1;
  int bytes_per_channel = 1;  //!< 1 for 8-bit images, the only kind the server takes
  std::size_t stride = 0;
};

//! (height, width) uint8 object ids, row-major: 0 background, objects in the first mask's own ids.
struct Labels {
  int height = 0;
  int width = 0;
  std::vector<std::uint8_t> data;
  ImageView view() const { return {data.data(), height, width, 1, 1, 0}; }
};

//! One frame's answer.
struct Result {
  Labels labels;
  std::vector<std::uint8_t> object_ids;  //!< the video's object ids, increasing (K of them)
  std::vector<float> prob;  //!< with return_prob: (K + 1, height, width) probabilities, background first; else empty
};

//! Options of a video's first request.
struct StartOptions {
  bool bgr = false;  //!< the video's frames are BGR (as OpenCV decodes them), not RGB
  bool return_prob = false;
};

struct ClientOptions {
  double timeout_s = 600.0;        //!< per request
  double connect_timeout_s = 10.0;  //!< the readiness check of each server when the Client is made
};

namespace detail {
struct Pool;
struct Kept;
}

class Client;

//! One video on a server: start, step..., end. Movable, not copyable; an open Video ends itself when destroyed
//! (ignoring errors: call end() to see them). It keeps each object's reference keyframe and the last frame, with
//! the labels and state the server answered: when its server cannot be reached, restarts or no longer holds the
//! video, the failed request re-primes the video on a live server (a resume request, simvos_trt/serve/README.md
//! "Failover") and is sent again: no frame is lost or repeated.
class Video {
 public:
  Video(Video&&) noexcept;
  Video& operator=(Video&&) noexcept;
  Video(const Video&) = delete;
  Video& operator=(const Video&) = delete;
  ~Video();

  //! The first frame (H, W, 3) uint8 and its index mask (H, W) uint8 (0 background, objects 1..255); returns
  //! the mask itself as labels. Placed on one of the client's servers (InputError/ServeError otherwise).
  Result start(const ImageView& frame, const ImageView& mask, const StartOptions& options = {});
  //! The next frame, of the first frame's size and channel order.
  Result step(const ImageView& frame, bool return_prob = false);
  //! The next frame with a mask (H, W) uint8 stating objects there: a new id joins, an id of the video is
  //! corrected (its reference becomes this frame), 0 states nothing (the other objects keep propagating).
  Result step(const ImageView& frame, const ImageView& mask, bool return_prob = false);
  //! Takes objects out of the video (ServeError with the server's reason for an id not alive).
  void remove_objects(const std::vector<std::uint8_t>& ids);
  //! Ends the video on its server, freeing its state (idempotent).
  void end();

  const std::string& id() const noexcept { return id_; }
  //! HOST:PORT of the server the video is on (empty before start).
  const std::string& server() const;
  //! The video's object ids, increasing (empty before start).
  const std::vector<std::uint8_t>& object_ids() const noexcept { return object_ids_; }
  bool is_open() const noexcept { return open_; }
  //! How often the video was re-primed on a server (failover).
  int moves() const noexcept { return moves_; }

 private:
  friend class Client;
  Video(std::shared_ptr<detail::Pool> pool, std::string id);
  void check_open() const;
  //! The request of the next frame (and a mask stating objects on it), asking for the state a resume needs.
  wire::Request frame_request(const ImageView& frame, const ImageView* mask, bool return_prob) const;
  //! Sends a frame's request (call) and keeps what a resume needs of its answer (remember).
  Result send(const wire::Request& request);
  void remember(const wire::Request& request, const Result& result, wire::Tensor state);
  //! Sends `request` to the video's server; when that server is gone or no longer holds the video, re-primes the
  //! video (on the next-ranked server, or the same one) and sends it again.
  inference::ModelInferResponse call(const wire::Request& request);
  wire::Request resume_request() const;

  std::shared_ptr<detail::Pool> pool_;
  std::string id_;
  std::size_t server_ = 0;  // index into the pool's servers, valid while started_
  bool started_ = false;
  bool open_ = false;
  std::int64_t index_ = 0;  // the next frame's index
  bool bgr_ = false;
  int moves_ = 0;
  std::vector<std::uint8_t> object_ids_;
  std::unique_ptr<detail::Kept> kept_;  // what a resume needs
};

//! Connections to one or more simvos-serve servers. Each video lives on one server, chosen by rendezvous
//! hashing of its id (the same id lands on the same server of the same list, and a server added or left out
//! moves only the videos that rank it first); a server that cannot be reached when a video starts is skipped
//! for the one ranked next.
class Client {
 public:
  //! `servers`: "HOST:PORT[,HOST:PORT...]", each a simvos-serve gRPC endpoint (a bare HOST gets port 8001).
  //! ServeError when none of them can be reached or serves the `simvos` model.
  explicit Client(const std::string& servers, const ClientOptions& options = {});
  explicit Client(const std::vector<std::string>& servers, const ClientOptions& options = {});

  //! A new, not yet started, video (a random id unless given: 1..128 printable characters).
  Video video(std::string video_id = {}) const;
  //! The servers, as HOST:PORT.
  std::vector<std::string> servers() const;

 private:
  std::shared_ptr<detail::Pool> pool_;
};

//! "HOST:PORT" of a simvos-serve gRPC endpoint; a bare HOST gets port 8001 (IPv6 in brackets:
//! "[::1]:8001"). InputError for anything else.
std::string grpc_address(const std::string& text);
//! grpc_address of each entry of a comma-separated list; InputError for an empty list or entry.
std::vector<std::string> parse_servers(const std::string& list);
//! The server's own reason inside a Triton error message (the first line after the last
//! "simvos-serve error: "), empty when it has none.
std::string server_message(const std::string& triton_message);

}  // namespace simvos
