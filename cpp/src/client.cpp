// Client and Video over gRPC: one request per frame (simvos_trt/serve/README.md).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstdio>
#include <functional>
#include <random>
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

}  // namespace detail

namespace {

using detail::Pool;
using detail::Server;

std::string one_line(const std::string& text) {
  std::string out;
  for (const char c : text) {
    const bool space = std::isspace(static_cast<unsigned char>(c));
    if (!space || (!out.empty() && out.back() != ' ')) out += space ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.size() > 400 ? out.substr(0, 400) : out;
}

ServeError status_error(const std::string& server, const grpc::Status& status, double timeout_s) {
  const std::string text = status.error_message();
  if (const std::string own = server_message(text); !own.empty())
    return ServeError(server, "server " + server + ": " + own, own);
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE)
    return ServeError(server, "server " + server + ": cannot reach it (" + one_line(text) +
                                  "); start one with simvos-serve --engine-dir DIR and give its gRPC port (default "
                                  "8001; the HTTP port, default 8000, does not speak gRPC)");
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", timeout_s);
    return ServeError(server, "server " + server + ": no answer within " + seconds + " s (ClientOptions::timeout_s)");
  }
  return ServeError(server, "server " + server + ": " + one_line(text));
}

//! A server that could not be reached when a video started: the next server is tried.
class Unreachable : public ServeError {
 public:
  explicit Unreachable(const ServeError& error) : ServeError(error) {}
};

void set_deadline(grpc::ClientContext& context, double seconds) {
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::microseconds(static_cast<std::int64_t>(seconds * 1e6)));
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
std::unique_ptr<ServeError> check_ready(const Server& server, double timeout_s) {
  inference::ModelReadyRequest request;
  request.set_name(wire::kModel);
  inference::ModelReadyResponse response;
  grpc::ClientContext context;
  set_deadline(context, timeout_s);
  const grpc::Status status = server.stub->ModelReady(&context, request, &response);
  if (!status.ok()) return std::make_unique<ServeError>(status_error(server.address, status, timeout_s));
  if (!response.ready())
    return std::make_unique<ServeError>(server.address, "server " + server.address + " has no ready model '" +
                                                            wire::kModel + "': is it a simvos-serve server?");
  return nullptr;
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
  char text[33];
  for (int i = 0; i < 32; i += 8) std::snprintf(text + i, 9, "%08x", static_cast<unsigned>(device()));
  return std::string(text, 32);
}

//! A stable hash, the same in every process: FNV-1a, then splitmix64's finalizer (FNV-1a alone ranks
//! "HOST:PORT/id" of two servers nearly alike for every id: its last steps hardly mix earlier differences).
std::uint64_t stable_hash(const std::string& text) {
  std::uint64_t hash = 1469598103934665603ULL;
  for (const unsigned char c : text) hash = (hash ^ c) * 1099511628211ULL;
  hash = (hash ^ (hash >> 30)) * 0xbf58476d1ce4e5b9ULL;
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

Video::Video(std::shared_ptr<detail::Pool> pool, std::string id) : pool_(std::move(pool)), id_(std::move(id)) {}
Video::Video(Video&& other) noexcept
    : pool_(std::move(other.pool_)),
      id_(std::move(other.id_)),
      server_(other.server_),
      started_(std::exchange(other.started_, false)),
      open_(std::exchange(other.open_, false)),  // the moved-from Video has nothing to end
      index_(other.index_),
      object_ids_(std::move(other.object_ids_)) {}

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
    open_ = std::exchange(other.open_, false);
    index_ = other.index_;
    object_ids_ = std::move(other.object_ids_);
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
  wire::check_frame(frame, "frame");
  wire::check_mask(mask, frame);
  const std::vector<std::size_t> order = placement(pool_->servers, id_);
  for (const std::size_t server : order) {
    server_ = server;
    index_ = 0;
    try {
      Result result = send(frame, &mask, true, options.return_prob, options.bgr);
      started_ = true;
      return result;
    } catch (const Unreachable& error) {
      if (server == order.back()) throw ServeError(error);  // no server left to try
    }
  }
  throw Error("no server to start on");  // unreachable: a Client has at least one server
}

Result Video::step(const ImageView& frame, bool return_prob) {
  if (!started_) throw InputError("video '" + id_ + "': step() before start(); call start(frame, mask) first");
  if (!open_) throw InputError("video '" + id_ + "' has ended; start a new video");
  wire::check_frame(frame, "frame");
  return send(frame, nullptr, false, return_prob, false);
}

Result Video::step(const ImageView&, const ImageView&, bool) {
  throw InputError("video '" + id_ + "': this client sends a mask with the first frame only (start); the serve "
                   "protocol takes masks on later frames from issue 19's serve work on");
}

void Video::remove_objects(const std::vector<std::uint8_t>&) {
  throw InputError("video '" + id_ + "': this client cannot remove objects yet (the serve protocol has no removal)");
}

void Video::end() {
  if (!open_) return;
  open_ = false;
  wire::Request request{id_};
  request.end = true;
  const Server& server = pool_->servers[server_];
  inference::ModelInferResponse response;
  const grpc::Status status = infer(server, request, pool_->options.timeout_s, &response);
  if (!status.ok()) throw status_error(server.address, status, pool_->options.timeout_s);
}

Result Video::send(const ImageView& frame, const ImageView* mask, bool start, bool return_prob, bool bgr) {
  wire::Request request{id_};
  request.start = start;
  request.bgr = bgr;
  request.return_prob = return_prob;
  request.frame_index = index_;
  request.frame = &frame;
  request.mask = mask;
  const Server& server = pool_->servers[server_];
  inference::ModelInferResponse response;
  const grpc::Status status = infer(server, request, pool_->options.timeout_s, &response);
  if (!status.ok()) {
    ServeError error = status_error(server.address, status, pool_->options.timeout_s);
    if (start && status.error_code() == grpc::StatusCode::UNAVAILABLE) throw Unreachable(error);
    throw error;
  }
  Result result = wire::decode(server.address, response, frame, return_prob);
  ++index_;
  open_ = true;
  object_ids_ = result.object_ids;
  return result;
}

}  // namespace simvos
