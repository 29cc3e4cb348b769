// What needs no simvos-serve: addresses, error texts, frame order, index PNGs, unreachable and garbage servers.
#include <arpa/inet.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "frames.hpp"
#include "kserve_v2.grpc.pb.h"
#include "index_png.hpp"
#include "server_fixture.hpp"
#include "simvos/client.hpp"

namespace fs = std::filesystem;
using simvos::testing::run;

namespace {

//! A socket listening on 127.0.0.1 (port chosen by the system); closed when destroyed.
struct Listener {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int port = 0;
  Listener() {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), size), 0);
    EXPECT_EQ(listen(fd, 8), 0);
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
    port = ntohs(address.sin_port);
  }
  ~Listener() { close(fd); }
  std::string url() const { return "127.0.0.1:" + std::to_string(port); }
};

//! A port on 127.0.0.1 where nothing listens (it was free a moment ago).
std::string closed_url() { return Listener().url(); }

//! A server answering every connection with junk, then closing it.
class GarbageServer {
 public:
  GarbageServer() : thread_([this] { serve(); }) {}
  ~GarbageServer() {
    stop_ = true;
    shutdown(listener_.fd, SHUT_RDWR);
    thread_.join();
  }
  std::string url() const { return listener_.url(); }

 private:
  void serve() {
    while (!stop_) {
      const int client = accept(listener_.fd, nullptr, nullptr);
      if (client < 0) return;
      const char junk[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\njunk!\x00\xff\x13\x37garbage";
      (void)!write(client, junk, sizeof junk);
      close(client);
    }
  }
  Listener listener_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

//! A KServe v2 gRPC server on 127.0.0.1 that answers every ModelInfer with `answer` (or `error`): a server
//! speaking the protocol but not simvos-serve's model.
class FakeKServe final : public inference::GRPCInferenceService::Service {
 public:
  inference::ModelInferResponse answer;
  grpc::Status error = grpc::Status::OK;
  bool ready = true;
  std::vector<inference::ModelInferRequest> requests;  // every ModelInfer request received
  std::size_t lose_at = 0;  // when > 0: the request of that number (1-based) finds the video lost
  std::string lost_message = "video 'lost' is not open (it was closed: no request for 60 s); a video's first ...";

  FakeKServe() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeKServe() override { server_->Shutdown(); }
  std::string url() const { return "127.0.0.1:" + std::to_string(port_); }

  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest*,
                          inference::ModelReadyResponse* response) override {
    response->set_ready(ready);
    return grpc::Status::OK;
  }
  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest* request,
                          inference::ModelInferResponse* response) override {
    requests.push_back(*request);  // one request at a time: the client waits for each answer
    if (requests.size() == lose_at) return {grpc::StatusCode::INTERNAL, "simvos-serve error: " + lost_message};
    *response = answer;
    return error;
  }

  //! Adds an output tensor to the answer.
  void output(const char* name, const char* datatype, std::vector<std::int64_t> shape, std::string bytes) {
    auto* tensor = answer.add_outputs();
    tensor->set_name(name);
    tensor->set_datatype(datatype);
    for (const std::int64_t d : shape) tensor->add_shape(d);
    answer.add_raw_output_contents(std::move(bytes));
  }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

//! A fake that answers every request as simvos-serve would for a 2x3 video of object 1.
void answer_as_simvos(FakeKServe& fake) {
  fake.output("labels", "UINT8", {2, 3}, std::string(6, '\1'));
  fake.output("object_ids", "UINT8", {1}, std::string(1, '\1'));
  fake.output("state", "FP32", {1, 1, 2, 2}, std::string(16, '\0'));  // return_state: what a resume needs
}

//! The 2x3 video that answer_as_simvos answers for: a grey frame, all of it object 1.
struct TinyVideo {
  static constexpr int kHeight = 2, kWidth = 3;
  std::vector<std::uint8_t> frame = std::vector<std::uint8_t>(kHeight * kWidth * 3, 7);
  std::vector<std::uint8_t> mask = std::vector<std::uint8_t>(kHeight * kWidth, 1);
  simvos::ImageView frame_view() const { return {frame.data(), kHeight, kWidth, 3, 1, 0}; }
  simvos::ImageView mask_view() const { return {mask.data(), kHeight, kWidth, 1, 1, 0}; }
};

//! The server that a 2x3 video `id` starts on through `client`.
std::string started_on(const simvos::Client& client, const std::string& id) {
  const TinyVideo tiny;
  simvos::Video video = client.video(id);
  video.start(tiny.frame_view(), tiny.mask_view());
  return video.server();
}

//! The ServeError of starting a 2x3 video on `fake` (empty if none).
std::string start_error(const FakeKServe& fake) {
  const TinyVideo tiny;
  try {
    simvos::Client client(fake.url());
    client.video().start(tiny.frame_view(), tiny.mask_view());
  } catch (const simvos::ServeError& error) {
    return error.what();
  }
  return {};
}

//! A one-frame video folder and its mask, for the tool.
fs::path tiny_clip(const std::string& name) {
  const fs::path root = fs::temp_directory_path() / ("simvos-cpp-" + name + "-" + std::to_string(getpid()));
  fs::create_directories(root / "frames");
  cv::imwrite((root / "frames" / "00000.png").string(), cv::Mat(16, 24, CV_8UC3, cv::Scalar(10, 20, 30)));
  simvos::Labels mask{16, 24, std::vector<std::uint8_t>(16 * 24, 1)};
  simvos::png::write_index_png((root / "mask.png").string(), mask, simvos::png::davis_palette(), 0);
  return root;
}

std::string tool() { return SIMVOS_SEGMENT_CPP; }

}  // namespace

TEST(Address, NormalisesAsThePythonClient) {
  EXPECT_EQ(simvos::grpc_address("127.0.0.1:8001"), "127.0.0.1:8001");
  EXPECT_EQ(simvos::grpc_address("gpu-3"), "gpu-3:8001");
  EXPECT_EQ(simvos::grpc_address("[::1]"), "[::1]:8001");
  EXPECT_EQ(simvos::grpc_address("[::1]:9000"), "[::1]:9000");
  EXPECT_EQ(simvos::parse_servers("a:1,b"), (std::vector<std::string>{"a:1", "b:8001"}));
}

TEST(Address, RefusesWhatIsNotHostPort) {
  for (const char* bad : {"", " ", "host:", "host:0", "host:65536", "host:8o01", "::1", "a b:1", "[::1", "[]:1",
                          ":8001", "[::1]x", "host:123456"})
    EXPECT_THROW(simvos::grpc_address(bad), simvos::InputError) << "'" << bad << "'";
  for (const char* bad : {"", "a:1,", ",a:1", "a:1,,b:2"})
    EXPECT_THROW(simvos::parse_servers(bad), simvos::InputError) << "'" << bad << "'";
  EXPECT_THROW(simvos::Client("127.0.0.1:1,127.0.0.1:1"), simvos::InputError);  // before connecting
  try {
    simvos::Client client("host:99999");
    FAIL() << "no error";
  } catch (const simvos::InputError& error) {
    EXPECT_STREQ(error.what(), "server 'host:99999': the port '99999' is not in 1..65535; expected HOST:PORT "
                               "(simvos-serve's gRPC port, default 8001, an IPv6 address in brackets: [::1]:8001)");
  }
}

TEST(ServerMessage, IsTheFirstLineAfterTheLastMarker) {
  EXPECT_EQ(simvos::server_message("Traceback (most recent call last):\n  simvos-serve error: old\n"
                                   "InputError: simvos-serve error: video 'v' is not open \nmore"),
            "video 'v' is not open");
  EXPECT_EQ(simvos::server_message("inference input 'frame' data-type is 'FP32'"), "");
}

TEST(Frames, NaturalOrderAsPython) {
  // sorted(names, key=simvos_trt.runtime.video_io.natural_key), worked out by hand
  std::vector<std::string> names{"frame10.jpg", "B.png", "frame2.jpg", "10.jpg", "a.png", "2.jpg", "frame02b.jpg"};
  std::sort(names.begin(), names.end(), simvos::natural_less);
  EXPECT_EQ(names, (std::vector<std::string>{"2.jpg", "10.jpg", "a.png", "B.png", "frame2.jpg", "frame02b.jpg",
                                             "frame10.jpg"}));
}

TEST(Frames, DamagedImagesAreInputErrors) {
  const fs::path dir = fs::temp_directory_path() / ("simvos-frames-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::vector<std::uint8_t> jpeg;
  cv::imencode(".jpg", cv::Mat(32, 32, CV_8UC3, cv::Scalar(9, 99, 199)), jpeg);
  const std::pair<std::string, std::string> cases[] = {
      {"cut.jpg", std::string(jpeg.begin(), jpeg.end() - 40)}, {"text.png", "not an image"}};
  for (const auto& [name, bytes] : cases) {
    fs::remove_all(dir / "frames");
    fs::create_directories(dir / "frames");
    std::ofstream(dir / "frames" / name, std::ios::binary) << bytes;
    simvos::FrameSource source(dir / "frames", {dir / "mask.png"});
    std::string stem;
    cv::Mat frame;
    try {
      source.next(stem, frame);
      ADD_FAILURE() << name << ": no error";
    } catch (const simvos::InputError& error) {
      EXPECT_NE(std::string(error.what()).find("damaged"), std::string::npos) << error.what();
    }
  }
  std::ofstream(dir / "frames" / "whole.jpg", std::ios::binary) << std::string(jpeg.begin(), jpeg.end());
  fs::remove(dir / "frames" / "text.png");
  simvos::FrameSource source(dir / "frames", {dir / "mask.png"});
  std::string stem;
  cv::Mat frame;
  ASSERT_TRUE(source.next(stem, frame));
  EXPECT_EQ(stem, "whole");
  EXPECT_EQ(frame.type(), CV_8UC3);
  fs::remove_all(dir);
}

TEST(IndexPng, RoundTripKeepsLabelsAndPalette) {
  simvos::Labels labels{3, 5, {0, 1, 9, 9, 0, 1, 1, 0, 255, 0, 9, 0, 0, 0, 1}};
  simvos::png::Palette palette{};
  palette[27] = 7;  // entry 9 = (7, 8, 9)
  palette[28] = 8;
  palette[29] = 9;
  const fs::path path = fs::temp_directory_path() / ("simvos-roundtrip-" + std::to_string(getpid()) + ".png");
  simvos::png::write_index_png(path.string(), labels, palette, 10);
  const simvos::png::IndexImage back = simvos::png::read_index_png(path.string());
  fs::remove(path);
  EXPECT_EQ(back.labels.data, labels.data);
  ASSERT_EQ(back.palette_size, 256);
  const simvos::png::Palette davis = simvos::png::davis_palette();
  EXPECT_TRUE(std::equal(back.palette.begin(), back.palette.begin() + 30, palette.begin()));
  EXPECT_TRUE(std::equal(back.palette.begin() + 30, back.palette.end(), davis.begin() + 30));
  EXPECT_EQ(davis[3], 128);  // 1 -> (128, 0, 0)
  EXPECT_EQ(davis[7], 128);  // 2 -> (0, 128, 0)
}

TEST(IndexPng, RefusesWhatIsNotAnIndexMask) {
  const fs::path dir = fs::temp_directory_path() / ("simvos-badmasks-" + std::to_string(getpid()));
  fs::create_directories(dir);
  cv::imwrite((dir / "colour.png").string(), cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3)));
  cv::imwrite((dir / "deep.png").string(), cv::Mat(4, 4, CV_16UC1, cv::Scalar(300)));
  std::string bytes = simvos::png::encode_index_png({4, 4, std::vector<std::uint8_t>(16, 1)}, {}, 0);
  std::ofstream(dir / "cut.png", std::ios::binary) << bytes.substr(0, bytes.size() - 30);
  std::ofstream(dir / "text.png") << "not a png";
  const std::pair<const char*, const char*> cases[] = {{"colour.png", "is a colour image"},
                                                       {"deep.png", "of more than 8 bits"},
                                                       {"cut.png", "cannot read"},
                                                       {"text.png", "as a PNG"},
                                                       {"missing.png", "does not exist"}};
  for (const auto& [name, message] : cases) {
    try {
      simvos::png::read_index_png((dir / name).string());
      ADD_FAILURE() << name << ": no error";
    } catch (const simvos::InputError& error) {
      EXPECT_NE(std::string(error.what()).find(message), std::string::npos) << error.what();
    }
  }
  fs::remove_all(dir);
}

TEST(Client, UnreachableServerIsAServeError) {
  const std::string url = closed_url();
  try {
    simvos::Client client(url);
    FAIL() << "no error";
  } catch (const simvos::ServeError& error) {
    EXPECT_EQ(std::string(error.what()).rfind("server " + url + ": cannot reach it (", 0), 0u) << error.what();
    EXPECT_EQ(error.server(), url);
    EXPECT_EQ(error.server_message(), "");
  }
  EXPECT_THROW(simvos::Client(closed_url() + "," + closed_url()), simvos::ServeError);
}

TEST(Client, GarbageServerIsAServeErrorNotACrash) {
  const GarbageServer garbage;
  simvos::ClientOptions options;
  options.connect_timeout_s = 5;
  try {
    simvos::Client client(garbage.url(), options);
    FAIL() << "no error";
  } catch (const simvos::ServeError& error) {
    EXPECT_EQ(std::string(error.what()).rfind("server " + garbage.url() + ": ", 0), 0u) << error.what();
  }
}

TEST(Tool, ErrorsAreOneLineExit2) {
  const fs::path clip = tiny_clip("errors");
  const std::string inputs = " --input " + (clip / "frames").string() + " --mask " + (clip / "mask.png").string();
  const std::string out = " --out " + (clip / "out").string();
  fs::create_directories(clip / "foreign");
  std::ofstream(clip / "foreign" / "notes.txt") << "mine";
  fs::create_directories(clip / "other");
  std::ofstream(clip / "other" / ".simvos-trt.json") << R"({"tool": "simvos-segment", "source": "video /elsewhere"})";
  fs::create_directories(clip / "masks");
  fs::create_directories(clip / "twice");
  fs::create_directories(clip / "none");
  for (const char* copy : {"masks/00000.png", "masks/00007.png", "twice/00000.png"})
    fs::copy_file(clip / "mask.png", clip / copy);
  const std::string frames = " --input " + (clip / "frames").string();
  const std::pair<std::string, std::string> cases[] = {
      {"--server 127.0.0.1:1" + frames + " --masks " + (clip / "masks").string() + out,
       "masks ['00007'] name no frame of " + (clip / "frames").string() + "; name each mask after the frame it "
       "annotates (its frames are 00000 .. 00000)"},
      {"--server 127.0.0.1:1" + frames + " --mask " + (clip / "masks" / "00000.png").string() + " --mask " +
           (clip / "twice" / "00000.png").string() + out,
       "masks: several masks annotate frames ['00000']; give one mask per frame"},
      {"--server 127.0.0.1:1" + frames + " --masks " + (clip / "none").string() + out, "no .png mask in this folder"},
      {"--server 127.0.0.1:1" + inputs + " --masks " + (clip / "none").string() + out, "not allowed with"},
      {"--server 127.0.0.1:1" + inputs + " --out " + (clip / "foreign").string(),
       "holds files that simvos-segment did not write; it is left alone (even with --force)"},
      {"--server 127.0.0.1:1" + inputs + " --out " + (clip / "other").string(),
       "already holds the output of video /elsewhere; pass --force to replace it"},
      {"--server 127.0.0.1:1" + inputs + " --out " + (clip / "frames").string(), "is, holds or lies inside the input"},
      {"--server " + closed_url() + inputs + out, "cannot reach it"},
      {"--server 'a b:1'" + inputs + out, "server 'a b:1': contains a space"},
      {"--server 127.0.0.1:1" + inputs, "the argument --out is required"},
      {"--server 127.0.0.1:1 --input " + (clip / "nothing").string() + " --mask x.png" + out, "does not exist"},
      {"--server 127.0.0.1:1 --bogus", "unrecognized argument '--bogus'"}};
  for (const auto& [arguments, message] : cases) {
    std::string stdout_text, stderr_text;
    EXPECT_EQ(run(tool() + " " + arguments, &stdout_text, &stderr_text), 2) << arguments;
    EXPECT_EQ(stdout_text, "");
    EXPECT_EQ(stderr_text.rfind("simvos-segment-cpp: error: ", 0), 0u) << stderr_text;
    EXPECT_EQ(std::count(stderr_text.begin(), stderr_text.end(), '\n'), 1) << stderr_text;
    EXPECT_NE(stderr_text.find(message), std::string::npos) << stderr_text;
  }
  fs::remove_all(clip);
}

TEST(Tool, HelpExplainsEveryOption) {
  std::string text;
  ASSERT_EQ(run(tool() + " --help", &text), 0);
  for (const char* option : {"--server", "--input", "--mask", "--masks", "--out", "--force", "--bgr", "--no-bgr",
                             "--json", "--help", "exit codes"})
    EXPECT_NE(text.find(option), std::string::npos) << option;
}

TEST(Client, AnswersThatAreNotSimvosServesAreServeErrors) {
  const std::string expected = "; is it a simvos-serve server of this protocol?";
  {
    FakeKServe fake;  // no outputs at all
    EXPECT_EQ(start_error(fake), "server " + fake.url() + ": unexpected answer: no output 'labels'" + expected);
  }
  {
    FakeKServe fake;  // labels of another size than the frame
    fake.output("labels", "UINT8", {3, 2}, std::string(6, '\1'));
    EXPECT_EQ(start_error(fake), "server " + fake.url() + ": unexpected answer: output 'labels' is UINT8 [3, 2] in 6 "
                                 "bytes, expected UINT8 [2, 3]" + expected);
  }
  {
    FakeKServe fake;  // fewer bytes than the shape says
    fake.output("labels", "UINT8", {2, 3}, std::string(6, '\1'));
    fake.output("object_ids", "UINT8", {2}, std::string(1, '\1'));
    EXPECT_NE(start_error(fake).find("output 'object_ids' is UINT8 [2] in 1 bytes"), std::string::npos);
  }
  {
    FakeKServe fake;  // a tensor without its raw contents
    fake.output("labels", "UINT8", {2, 3}, std::string(6, '\1'));
    fake.answer.mutable_raw_output_contents()->RemoveLast();
    EXPECT_NE(start_error(fake).find("the outputs do not carry raw contents (1 outputs, 0 contents)"),
              std::string::npos);
  }
  {
    FakeKServe fake;  // an error as Triton words simvos-serve's refusals
    fake.error = grpc::Status(grpc::StatusCode::INTERNAL, "Traceback ...\nsimvos-serve error: video 'x' is bad\n");
    EXPECT_EQ(start_error(fake), "server " + fake.url() + ": video 'x' is bad");
  }
  {
    FakeKServe fake;
    fake.ready = false;
    EXPECT_EQ(start_error(fake), "server " + fake.url() + " has no ready model 'simvos': is it a simvos-serve server?");
  }
}

TEST(Client, PlacesVideosByRendezvousHashing) {
  FakeKServe a, b;
  answer_as_simvos(a);
  answer_as_simvos(b);
  const simvos::Client ab({a.url(), b.url()}), ba({b.url(), a.url()}), only_a({a.url(), closed_url()});
  std::set<std::string> used;
  for (int i = 0; i < 32; ++i) {
    const std::string id = "video-" + std::to_string(i), server = started_on(ab, id);
    used.insert(server);
    EXPECT_EQ(started_on(ba, id), server) << id;  // the list's order does not matter, only its members
    EXPECT_EQ(started_on(only_a, id), a.url()) << id;  // a server that cannot be reached is skipped
  }
  EXPECT_EQ(used, (std::set<std::string>{a.url(), b.url()}));  // both take videos
}

TEST(Video, ReprimesAVideoItsServerLost) {  // the resume request as simvos_trt/serve/README.md "Failover" states it
  FakeKServe fake;
  answer_as_simvos(fake);
  fake.lose_at = 2;  // the first step finds the video gone (the server restarted, or closed it)
  const TinyVideo tiny;
  simvos::Client client(fake.url());
  simvos::Video video = client.video("lost");
  simvos::StartOptions bgr;
  bgr.bgr = true;
  video.start(tiny.frame_view(), tiny.mask_view(), bgr);
  video.step(tiny.frame_view());
  EXPECT_EQ(video.moves(), 1);
  EXPECT_EQ(video.server(), fake.url());
  ASSERT_EQ(fake.requests.size(), 4u);  // start, the lost step, resume, the step again
  const inference::ModelInferRequest& resume = fake.requests[2];
  EXPECT_TRUE(resume.parameters().at("resume").bool_param());
  EXPECT_TRUE(resume.parameters().at("bgr").bool_param());
  std::map<std::string, std::pair<std::vector<std::int64_t>, std::string>> inputs;
  for (int i = 0; i < resume.inputs_size(); ++i)
    inputs[resume.inputs(i).name()] = {{resume.inputs(i).shape().begin(), resume.inputs(i).shape().end()},
                                       resume.raw_input_contents(i)};
  using Shape = std::vector<std::int64_t>;
  EXPECT_EQ(inputs["keyframes"], std::pair(Shape{1, 2, 3, 3}, std::string(tiny.frame.begin(), tiny.frame.end())));
  EXPECT_EQ(inputs["keyframe_labels"], std::pair(Shape{1, 2, 3}, std::string(6, '\1')));  // the labels answered
  EXPECT_EQ(inputs["keyframe_index"], std::pair(Shape{1}, std::string(8, '\0')));  // int64 0
  EXPECT_EQ(inputs["reference_ids"], std::pair(Shape{1}, std::string(1, '\1')));
  EXPECT_EQ(inputs["reference_keyframes"], std::pair(Shape{1}, std::string(1, '\0')));
  EXPECT_EQ(inputs["state"], std::pair(Shape{1, 1, 2, 2}, std::string(16, '\0')));  // the last state answered
  EXPECT_EQ(inputs.size(), 6u);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(fake.requests[3], fake.requests[1]));  // again
}

TEST(Video, RecognisesItsLossWhateverQuotesItsIdHolds) {  // protocol.not_open quotes the id with Python's repr
  const std::pair<std::string, std::string> ids_and_reprs[] = {  // repr(id), as Python prints it
      {"it's", "\"it's\""}, {"both ' and \"", "'both \\' and \"'"}, {"back\\slash", "'back\\\\slash'"}};
  for (const auto& [id, repr] : ids_and_reprs) {
    FakeKServe fake;
    answer_as_simvos(fake);
    fake.lose_at = 2;
    fake.lost_message = "video " + repr + " is not open (it was never started); a video's first request ...";
    const TinyVideo tiny;
    simvos::Client client(fake.url());
    simvos::Video video = client.video(id);
    video.start(tiny.frame_view(), tiny.mask_view());
    EXPECT_NO_THROW(video.step(tiny.frame_view())) << id;  // re-primed, not a ServeError
    EXPECT_EQ(video.moves(), 1) << id;
  }
}
