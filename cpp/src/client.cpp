// Client and Video over gRPC: one request per frame (simvos_trt/serve/README.md).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <utility>

#include "kserve_v2.grpc.pb.h"
#include "simvos/client.hpp"
#include "wire.hpp"

namespace simvos {

namespace detail {

struct Server {
  std::string address;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub;
};

struct Pool {
  std::vector<Server> servers;
  ClientOptions options;
};

//! A frame as sent, with the labels the server answered for it.
struct Keyframe {
  std::int64_t index = 0;
  std::string frame;  // (H, W, 3) uint8, rows packed
  std::vector<std::uint8_t> labels;  // (H, W)
};

//! What a video keeps to be re-primed elsewhere: each object's reference keyframe, the last frame, its state.
struct Kept {
  int height = 0, width = 0;
  std::map<std::uint8_t, std::shared_ptr<const Keyframe>> references;  // object id -> its reference keyframe
  std::shared_ptr<const Keyframe> last;
  wire::Tensor state;  // the last answer's `state` output
};

}  // namespace detail

namespace {

using detail::Pool;
using detail::Server;

//! The longest part of a gRPC error's text that an error message quotes.
constexpr std::size_t kMaxQuotedLength = 400;
//! A generated video id: this many random hex digits (128 bits, as a UUID).
constexpr std::size_t kRandomIdDigits = 32;
//! FNV-1a's 64-bit offset basis and prime.
constexpr std::uint64_t kFnvOffsetBasis = 1469598103934665603ULL;
constexpr std::uint64_t kFnvPrime = 1099511628211ULL;

//! `text` on one line (each run of white space a single space), cut at kMaxQuotedLength characters.
std::string one_line(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c)))
      out += c;
    else if (!out.empty() && out.back() != ' ')  // the first white space of a run, not leading
      out += ' ';
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.substr(0, kMaxQuotedLength);
}

//! A ServeError saying "server HOST:PORT: `why`" (`own`: the server's own reason, when `why` is that).
ServeError server_error(const std::string& server, const std::string& why, std::string own = {}) {
  return ServeError(server, "server " + server + ": " + why, std::move(own));
}

//! The ServeError of a failed call to `server`: its own reason when it gave one, else what gRPC says, with the fix.
ServeError status_error(const std::string& server, const grpc::Status& status, double timeout_s) {
  const std::string text = status.error_message();
  if (const std::string own = server_message(text); !own.empty()) return server_error(server, own, own);
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE)
    return server_error(server, "cannot reach it (" + one_line(text) + "); start one with simvos-serve --engine-dir "
                                "DIR and give its gRPC port (default 8001; the HTTP port, default 8000, does not "
                                "speak gRPC)");
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", timeout_s);
    return server_error(server, "no answer within " + std::string(seconds) + " s (ClientOptions::timeout_s)");
  }
  return server_error(server, one_line(text));
}

//! A server that could not be reached when a video started: the next server is tried.
class Unreachable : public ServeError {
 public:
  explicit Unreachable(const ServeError& error) : ServeError(error) {}
};

void set_deadline(grpc::ClientContext& context, double seconds) {
  const auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::duration<double>(seconds));
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

//! One ModelInfer call, with the video id as the routing header (README.md, "Routing").
grpc::Status infer(const Server& server, const wire::Request& request, double timeout_s,
                   inference::ModelInferResponse* response) {
  grpc::ClientContext context;
  set_deadline(context, timeout_s);
  context.AddMetadata(wire::kRoutingHeader, request.video_id);
  return server.stub->ModelInfer(&context, wire::encode(request), response);
}

//! Ready check; returns the error that makes `server` unusable now, or nothing.
std::optional<ServeError> check_ready(const Server& server, double timeout_s) {
  inference::ModelReadyRequest request;
  request.set_name(wire::kModel);
  inference::ModelReadyResponse response;
  grpc::ClientContext context;
  set_deadline(context, timeout_s);
  const grpc::Status status = server.stub->ModelReady(&context, request, &response);
  if (!status.ok()) return status_error(server.address, status, timeout_s);
  if (!response.ready())
    return ServeError(server.address, "server " + server.address + " has no ready model '" + wire::kModel +
                                          "': is it a simvos-serve server?");
  return std::nullopt;
}

std::shared_ptr<Pool> connect(const std::vector<std::string>& addresses, const ClientOptions& options) {
  if (addresses.empty()) throw InputError("no server given; give HOST:PORT[,HOST:PORT...] (gRPC ports)");
  auto pool = std::make_shared<Pool>();
  pool->options = options;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(INT_MAX);  // gRPC's default, 4 MB, is below one 1080p answer with prob
  args.SetMaxSendMessageSize(INT_MAX);
  for (const std::string& text : addresses) {
    const std::string address = grpc_address(text);
    for (const Server& server : pool->servers)
      if (server.address == address)
        throw InputError("servers: " + address + " is given twice; give distinct HOST:PORT addresses");
    auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    pool->servers.push_back({address, inference::GRPCInferenceService::NewStub(channel)});
  }
  std::string reasons;
  for (const Server& server : pool->servers) {
    const auto error = check_ready(server, options.connect_timeout_s);
    if (!error) return pool;  // one ready server is enough: the others are tried when a video starts
    if (pool->servers.size() == 1) throw *error;
    reasons += (reasons.empty() ? "" : "; ") + std::string(error->what());
  }
  throw ServeError(pool->servers.front().address, "no server can be used: " + reasons);
}

std::string random_id() {
  std::random_device device;
  std::string id;
  char word[9];  // 8 hex digits of one 32-bit draw, and the terminating NUL
  while (id.size() < kRandomIdDigits) {
    std::snprintf(word, sizeof word, "%08x", static_cast<unsigned>(device()));
    id += word;
  }
  return id;
}

//! A stable hash, the same in every process: FNV-1a, then splitmix64's finalizer (FNV-1a alone ranks
//! "HOST:PORT/id" of two servers nearly alike for every id: its last steps hardly mix earlier differences).
std::uint64_t stable_hash(const std::string& text) {
  std::uint64_t hash = kFnvOffsetBasis;
  for (const unsigned char c : text) hash = (hash ^ c) * kFnvPrime;
  hash = (hash ^ (hash >> 30)) * 0xbf58476d1ce4e5b9ULL;  // splitmix64's finalizer, its constants as published
  hash = (hash ^ (hash >> 27)) * 0x94d049bb133111ebULL;
  return hash ^ (hash >> 31);
}

//! The servers in the order a video tries them: rendezvous hashing of "HOST:PORT/id", so that a server added
//! to or left out of the list moves only the videos that rank it first.
std::vector<std::size_t> placement(const std::vector<Server>& servers, const std::string& id) {
  std::vector<std::pair<std::uint64_t, std::size_t>> ranked;
  for (std::size_t i = 0; i < servers.size(); ++i) ranked.emplace_back(stable_hash(servers[i].address + "/" + id), i);
  std::sort(ranked.begin(), ranked.end(), std::greater<>());
  std::vector<std::size_t> order;
  for (const auto& entry : ranked) order.push_back(entry.second);
  return order;
}

//! The server ranked after `current` in a video's `order` (the first one after the last).
std::size_t next_ranked(const std::vector<std::size_t>& order, std::size_t current) {
  const auto rank = static_cast<std::size_t>(std::find(order.begin(), order.end(), current) - order.begin());
  return order[(rank + 1) % order.size()];
}

//! `text` (printable ASCII, as video ids are) as Python's repr writes it: in single quotes, or in double quotes
//! when it holds a single quote and no double one; backslashes and the quote chosen escaped.
std::string python_repr(const std::string& text) {
  const bool has_single = text.find('\'') != std::string::npos;
  const bool has_double = text.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string repr(1, quote);
  for (const char c : text) {
    if (c == quote || c == '\\') repr += '\\';
    repr += c;
  }
  return repr + quote;
}

//! Whether the server's `message` says it does not hold video `id` (never started, closed, evicted): as
//! protocol.is_not_open, whose text quotes the id with Python's repr.
bool is_not_open(const std::string& message, const std::string& id) {
  return message.rfind("video " + python_repr(id) + " is not open (", 0) == 0;
}

}  // namespace

Client::Client(const std::string& servers, const ClientOptions& options)
    : pool_(connect(parse_servers(servers), options)) {}

Client::Client(const std::vector<std::string>& servers, const ClientOptions& options)
    : pool_(connect(servers, options)) {}

Video Client::video(std::string video_id) const {
  if (video_id.empty()) video_id = random_id();
  wire::check_video_id(video_id);
  return Video(pool_, std::move(video_id));
}

std::vector<std::string> Client::servers() const {
  std::vector<std::string> out;
  for (const Server& server : pool_->servers) out.push_back(server.address);
  return out;
}

Video::Video(std::shared_ptr<detail::Pool> pool, std::string id)
    : pool_(std::move(pool)), id_(std::move(id)), kept_(std::make_unique<detail::Kept>()) {}

Video::Video(Video&& other) noexcept { *this = std::move(other); }  // this Video is not open: nothing to end

Video& Video::operator=(Video&& other) noexcept {
  if (this != &other) {
    try {
      end();
    } catch (...) {  // as the destructor: the video was replaced
    }
    pool_ = std::move(other.pool_);
    id_ = std::move(other.id_);
    server_ = other.server_;
    started_ = std::exchange(other.started_, false);
    open_ = std::exchange(other.open_, false);  // the moved-from Video has nothing to end
    index_ = other.index_;
    bgr_ = other.bgr_;
    moves_ = other.moves_;
    object_ids_ = std::move(other.object_ids_);
    kept_ = std::move(other.kept_);
  }
  return *this;
}

Video::~Video() {
  try {
    end();
  } catch (...) {  // a destructor must not throw; end() reports the error to whoever calls it
  }
}

const std::string& Video::server() const {
  static const std::string none;
  return started_ ? pool_->servers[server_].address : none;
}

Result Video::start(const ImageView& frame, const ImageView& mask, const StartOptions& options) {
  if (open_) throw InputError("video '" + id_ + "' has started already; end() it first, or start a new video");
  wire::check_frame(frame);
  wire::check_mask(mask, frame);
  index_ = 0;
  bgr_ = options.bgr;
  *kept_ = detail::Kept{};
  kept_->height = frame.height;
  kept_->width = frame.width;
  wire::Request request = frame_request(frame, &mask, options.return_prob);
  request.start = true;
  request.bgr = bgr_;
  const std::vector<std::size_t> order = placement(pool_->servers, id_);
  for (const std::size_t server : order) {
    server_ = server;
    try {
      Result result = send(request);
      started_ = true;
      return result;
    } catch (const Unreachable& error) {
      if (server == order.back()) throw ServeError(error);  // no server left to try
    }
  }
  throw Error("no server to start on");  // unreachable: a Client has at least one server
}

Result Video::step(const ImageView& frame, bool return_prob) {
  check_open();
  wire::check_frame(frame);
  return send(frame_request(frame, nullptr, return_prob));
}

Result Video::step(const ImageView& frame, const ImageView& mask, bool return_prob) {
  check_open();
  wire::check_frame(frame);
  wire::check_mask(mask, frame);
  return send(frame_request(frame, &mask, return_prob));
}

void Video::remove_objects(const std::vector<std::uint8_t>& ids) {
  check_open();
  if (std::find(ids.begin(), ids.end(), 0) != ids.end())
    throw InputError("remove_objects: ids must be object ids 1..255, got 0 (the background)");
  wire::Request request{id_};
  request.return_state = true;
  const auto count = static_cast<std::int64_t>(ids.size());
  request.more.push_back({"remove", wire::kUint8.name, {count}, {ids.begin(), ids.end()}});
  wire::RemovalAnswer answer = wire::decode_removal(pool_->servers[server_].address, call(request));
  object_ids_ = std::move(answer.object_ids);
  kept_->state = std::move(answer.state);
  for (auto it = kept_->references.begin(); it != kept_->references.end();) {  // the removed lose their references
    const bool alive = std::find(object_ids_.begin(), object_ids_.end(), it->first) != object_ids_.end();
    if (alive)
      ++it;
    else
      it = kept_->references.erase(it);
  }
}

void Video::end() {
  if (!open_) return;
  open_ = false;
  *kept_ = {};
  wire::Request request{id_};
  request.end = true;
  const Server& server = pool_->servers[server_];
  inference::ModelInferResponse response;
  const grpc::Status status = infer(server, request, pool_->options.timeout_s, &response);
  if (status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE) return;  // a server gone holds nothing
  const ServeError error = status_error(server.address, status, pool_->options.timeout_s);
  if (!is_not_open(error.server_message(), id_)) throw error;  // a server no longer holding it: nothing to end
}

void Video::check_open() const {
  if (!started_) throw InputError("video '" + id_ + "': step() before start(); call start(frame, mask) first");
  if (!open_) throw InputError("video '" + id_ + "' has ended; start a new video");
}

wire::Request Video::frame_request(const ImageView& frame, const ImageView* mask, bool return_prob) const {
  wire::Request request{id_};
  request.return_prob = return_prob;
  request.return_state = true;  // what a resume sends back
  request.frame_index = index_;
  request.frame = &frame;
  request.mask = mask;
  return request;
}

Result Video::send(const wire::Request& request) {
  const inference::ModelInferResponse response = call(request);
  wire::FrameAnswer answer =
      wire::decode_frame(pool_->servers[server_].address, response, *request.frame, request.return_prob);
  remember(request, answer.result, std::move(answer.state));
  ++index_;
  open_ = true;
  object_ids_ = answer.result.object_ids;
  return std::move(answer.result);
}

void Video::remember(const wire::Request& request, const Result& result, wire::Tensor state) {
  auto keyframe = std::make_shared<const detail::Keyframe>(
      detail::Keyframe{index_, wire::packed(*request.frame), result.labels.data});
  std::set<std::uint8_t> stated;  // the ids the mask states (0: nothing)
  if (request.mask != nullptr) {
    const std::string ids = wire::packed(*request.mask);
    stated.insert(ids.begin(), ids.end());
  }
  std::map<std::uint8_t, std::shared_ptr<const detail::Keyframe>> references;
  for (const std::uint8_t id : result.object_ids) {  // a new or stated object's reference is this frame
    const auto kept = kept_->references.find(id);
    const bool keeps_its_reference = kept != kept_->references.end() && stated.count(id) == 0;
    references[id] = keeps_its_reference ? kept->second : keyframe;
  }
  kept_->references = std::move(references);
  kept_->last = std::move(keyframe);
  kept_->state = std::move(state);
}

inference::ModelInferResponse Video::call(const wire::Request& request) {
  const std::vector<std::size_t> order = placement(pool_->servers, id_);
  const double timeout_s = pool_->options.timeout_s;
  bool resume = false;  // whether the video must be re-primed on server_ first
  // Each failed try moves the video to the next server or re-primes it where it is: two rounds of the servers
  // give each server both chances.
  for (std::size_t attempt = 0; attempt <= 2 * order.size(); ++attempt) {
    const Server& server = pool_->servers[server_];
    inference::ModelInferResponse response;
    grpc::Status status = grpc::Status::OK;
    if (resume) {
      status = infer(server, resume_request(), timeout_s, &response);
      if (status.ok()) ++moves_;
    }
    if (status.ok()) status = infer(server, request, timeout_s, &response);
    if (status.ok()) return response;
    const ServeError error = status_error(server.address, status, timeout_s);
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      if (request.start) throw Unreachable(error);  // a start is placed anew by start()
      server_ = next_ranked(order, server_);  // the server is gone: the video moves to the next one
    } else if (request.start || !is_not_open(error.server_message(), id_)) {
      throw error;
    }
    resume = true;  // on the next server, or on this one, which no longer holds the video
  }
  throw ServeError(pool_->servers[server_].address, "video '" + id_ + "': its servers kept failing");
}

wire::Request Video::resume_request() const {
  std::vector<std::shared_ptr<const detail::Keyframe>> frames;  // each reference once, then the last frame
  for (const auto& [id, keyframe] : kept_->references)
    if (keyframe != kept_->last && std::find(frames.begin(), frames.end(), keyframe) == frames.end())
      frames.push_back(keyframe);
  frames.push_back(kept_->last);
  std::string pixels, labels, indices, ids, positions;
  for (const auto& keyframe : frames) {
    pixels += keyframe->frame;
    labels.append(keyframe->labels.begin(), keyframe->labels.end());
    indices.append(reinterpret_cast<const char*>(&keyframe->index), sizeof keyframe->index);  // little-endian
  }
  for (const auto& [id, keyframe] : kept_->references) {
    ids += static_cast<char>(id);
    positions += static_cast<char>(std::find(frames.begin(), frames.end(), keyframe) - frames.begin());
  }
  const auto n = static_cast<std::int64_t>(frames.size());
  const auto k = static_cast<std::int64_t>(ids.size());
  const std::int64_t h = kept_->height, w = kept_->width;
  wire::Request request{id_};
  request.resume = true;
  request.bgr = bgr_;
  request.more = {{"keyframes", wire::kUint8.name, {n, h, w, 3}, std::move(pixels)},
                  {"keyframe_labels", wire::kUint8.name, {n, h, w}, std::move(labels)},
                  {"keyframe_index", wire::kInt64.name, {n}, std::move(indices)},
                  {"reference_ids", wire::kUint8.name, {k}, std::move(ids)},
                  {"reference_keyframes", wire::kUint8.name, {k}, std::move(positions)}};
  if (!kept_->state.bytes.empty()) request.more.push_back(kept_->state);
  return request;
}

}  // namespace simvos
