// Against a real simvos-serve (serve_fixture.py): the C++ client and tool give what the Python ones give.
#include <gtest/gtest.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "frames.hpp"
#include "index_png.hpp"
#include "server_fixture.hpp"
#include "simvos/client.hpp"

namespace fs = std::filesystem;
using simvos::testing::read_bytes;
using simvos::testing::run;

namespace {

using simvos::image_view;

constexpr std::size_t kGoldenFrames = 6;  // serve_fixture.py's golden video, tiny_L4_tr

//! Frame `index` of the golden video (BGR, as OpenCV decodes it).
cv::Mat golden_frame(const simvos::testing::Served& served, std::size_t index) {
  const std::string name = simvos::video_frame_name(index) + ".png";
  return cv::imread((served.workdir / "golden" / "png" / name).string(), cv::IMREAD_COLOR);
}

//! The golden video's first mask, ids {1, 9}.
simvos::Labels golden_mask(const simvos::testing::Served& served) {
  return simvos::png::read_index_png((served.workdir / "golden" / "mask.png").string()).labels;
}

//! The labels of frame `index` that the Python client wrote (simvos-segment --server on the PNG frames).
simvos::Labels python_labels(const simvos::testing::Served& served, std::size_t index) {
  const std::string name = simvos::video_frame_name(index) + ".png";
  return simvos::png::read_index_png((served.workdir / "python-png" / name).string()).labels;
}

std::set<std::string> names(const fs::path& folder) {
  std::set<std::string> out;
  for (const auto& entry : fs::directory_iterator(folder)) out.insert(entry.path().filename());
  return out;
}

//! simvos-segment-cpp on the golden frames of `kind` gives, file for file and byte for byte, what
//! simvos-segment --server gave (the PNGs and the output folder's record).
void expect_same_output_as_python(const simvos::testing::Served& served, const std::string& kind,
                                  const std::string& input, const std::string& masks = "--mask mask.png") {
  const fs::path golden = served.workdir / "golden", out = served.workdir / ("cpp-" + kind);
  const fs::path python = served.workdir / ("python-" + kind);
  const std::string option = masks.substr(0, masks.find(' ')), given = masks.substr(masks.find(' ') + 1);
  std::string stdout_text, stderr_text;
  ASSERT_EQ(run(std::string(SIMVOS_SEGMENT_CPP) + " --server " + served.url + " --input " + (golden / input).string() +
                    " " + option + " " + (golden / given).string() + " --out " + out.string() + " --force --json",
                &stdout_text, &stderr_text),
            0)
      << stderr_text;
  EXPECT_NE(stdout_text.find("\"frames\": " + std::to_string(kGoldenFrames)), std::string::npos) << stdout_text;
  EXPECT_NE(stdout_text.find("\"objects\": 2"), std::string::npos) << stdout_text;
  ASSERT_EQ(names(out), names(python));
  EXPECT_EQ(names(out).size(), kGoldenFrames + 1);  // a mask per frame and .simvos-trt.json
  for (const std::string& name : names(out)) EXPECT_EQ(read_bytes(out / name), read_bytes(python / name)) << name;
}

}  // namespace

TEST(Segment, PngFramesGiveThePythonClientsBytes) {
  SIMVOS_SERVED(served);
  expect_same_output_as_python(*served, "png", "png");
}

TEST(Segment, JpegFramesGiveThePythonClientsBytes) {
  SIMVOS_SERVED(served);
  expect_same_output_as_python(*served, "jpg", "jpg");
}

TEST(Segment, AVideoFileGivesThePythonClientsBytes) {
  SIMVOS_SERVED(served);
  expect_same_output_as_python(*served, "video", "video.avi");  // masks named 00000.png...
}

TEST(Segment, FramesBeforeTheFirstAnnotationAsPython) {
  SIMVOS_SERVED(served);
  expect_same_output_as_python(*served, "late", "png", "--masks late");  // empty masks, then the objects
}

TEST(Segment, MasksOnLaterFramesAsPython) {
  SIMVOS_SERVED(served);
  expect_same_output_as_python(*served, "later", "png", "--masks later");  // a second mask on the fourth frame
}

TEST(IndexPng, EncodesAsThePythonTool) {
  SIMVOS_SERVED(served);
  int pairs = 0;
  for (const auto& entry : fs::directory_iterator(served->workdir / "pillow")) {
    if (entry.path().extension() != ".raw") continue;
    int height = 0, width = 0;
    const std::string size = entry.path().stem().extension().string();  // ".HxW"
    ASSERT_EQ(std::sscanf(size.c_str(), ".%dx%d", &height, &width), 2) << size;
    const std::string raw = read_bytes(entry.path());
    const simvos::Labels labels{height, width, std::vector<std::uint8_t>(raw.begin(), raw.end())};
    const fs::path pillow = entry.path().parent_path() / (entry.path().stem().stem().string() + ".png");
    EXPECT_EQ(simvos::png::encode_index_png(labels, {}, 0), read_bytes(pillow)) << pillow;
    ++pairs;
  }
  EXPECT_EQ(pairs, 3);
}

TEST(Video, StartStepEndThroughTheLibrary) {
  SIMVOS_SERVED(served);
  const simvos::Labels mask = golden_mask(*served);
  simvos::Client client(served->url);
  simvos::Video video = client.video();
  EXPECT_EQ(video.id().size(), 32u);
  EXPECT_EQ(video.server(), "");
  const cv::Mat first = golden_frame(*served, 0), second = golden_frame(*served, 1);
  simvos::StartOptions options;
  options.bgr = true;
  const simvos::Result start = video.start(image_view(first), mask.view(), options);
  EXPECT_EQ(start.labels.data, mask.data);  // the first answer is the mask itself
  EXPECT_EQ(video.object_ids(), (std::vector<std::uint8_t>{1, 9}));
  EXPECT_EQ(video.server(), served->url);
  simvos::Video moved = std::move(video);  // the moved-from video must not end the video when destroyed
  video = client.video();
  const simvos::Result next = moved.step(image_view(second), true);
  const auto [height, width] = std::pair{next.labels.height, next.labels.width};
  ASSERT_EQ(next.prob.size(), 3u * height * width);
  const std::size_t pixels = static_cast<std::size_t>(height) * width;
  for (std::size_t p = 0; p < pixels; ++p) {  // labels are the argmax of prob, in the mask's ids
    int best = 0;
    for (int k = 1; k < 3; ++k) best = next.prob[k * pixels + p] > next.prob[best * pixels + p] ? k : best;
    ASSERT_EQ(next.labels.data[p], best == 0 ? 0 : next.object_ids[best - 1]) << "pixel " << p;
  }
  EXPECT_EQ(next.labels.data, python_labels(*served, 1).data);
  moved.remove_objects({9});  // a removal alone: no frame
  EXPECT_EQ(moved.object_ids(), (std::vector<std::uint8_t>{1}));
  const simvos::Result third = moved.step(image_view(golden_frame(*served, 2)));
  EXPECT_EQ(std::count(third.labels.data.begin(), third.labels.data.end(), 9), 0);
  EXPECT_EQ(third.object_ids, (std::vector<std::uint8_t>{1}));
  try {
    moved.remove_objects({5});
    ADD_FAILURE() << "no error";
  } catch (const simvos::ServeError& error) {  // not an object of the video: the server's reason
    EXPECT_NE(error.server_message(), "");
  }
  moved.end();
  EXPECT_FALSE(moved.is_open());
  EXPECT_THROW(moved.step(image_view(second)), simvos::InputError);
}

TEST(Video, DestroyingAnOpenVideoEndsItOnTheServer) {
  SIMVOS_SERVED(served);
  simvos::Client client(served->url);
  const cv::Mat frame = golden_frame(*served, 0);
  const simvos::Labels mask = golden_mask(*served);
  client.video("scoped").start(image_view(frame), mask.view());
  simvos::Video again = client.video("scoped");  // the server refuses a second start of an open id
  EXPECT_NO_THROW(again.start(image_view(frame), mask.view()));
  EXPECT_THROW(again.start(image_view(frame), mask.view()), simvos::InputError);  // not sent: it is open
  EXPECT_THROW(client.video("scoped").start(image_view(frame), mask.view()), simvos::ServeError);
}

TEST(Video, ServerRefusalCarriesTheServersMessage) {
  SIMVOS_SERVED(served);
  simvos::Client client(served->url);
  const cv::Mat frame = golden_frame(*served, 0);
  simvos::Labels five{frame.rows, frame.cols, std::vector<std::uint8_t>(frame.total(), 0)};
  for (std::size_t p = 0; p < five.data.size(); ++p) five.data[p] = static_cast<std::uint8_t>(p % 6);
  simvos::Video video = client.video("too-many-objects");
  try {
    video.start(image_view(frame), five.view());
    FAIL() << "no error";
  } catch (const simvos::ServeError& error) {
    EXPECT_NE(error.server_message().find("--max-objects"), std::string::npos) << error.server_message();
    EXPECT_EQ(error.what(), "server " + served->url + ": " + error.server_message());
  }
  EXPECT_FALSE(video.is_open());

  simvos::Video other = client.video();
  const simvos::Labels mask = golden_mask(*served);
  other.start(image_view(frame), mask.view());
  const cv::Mat smaller = frame(cv::Rect(0, 0, frame.cols - 16, frame.rows)).clone();
  try {
    other.step(image_view(smaller));
    FAIL() << "no error";
  } catch (const simvos::ServeError& error) {
    EXPECT_NE(error.server_message().find("size"), std::string::npos) << error.server_message();
  }
}

TEST(Video, BadInputIsRefusedBeforeSending) {
  SIMVOS_SERVED(served);
  simvos::Client client(served->url);
  const cv::Mat frame = golden_frame(*served, 0);
  const simvos::Labels mask = golden_mask(*served);
  cv::Mat gray, deep;
  cv::extractChannel(frame, gray, 0);
  frame.convertTo(deep, CV_16UC3, 256);
  simvos::Video video = client.video();
  const std::pair<cv::Mat, const char*> frames[] = {{gray, "1 channel(s) of 8 bits"},
                                                    {deep, "3 channel(s) of 16 bits"}};
  for (const auto& [bad, message] : frames) {
    try {
      video.start(image_view(bad), mask.view());
      ADD_FAILURE() << "no error";
    } catch (const simvos::InputError& error) {
      EXPECT_NE(std::string(error.what()).find(message), std::string::npos) << error.what();
      EXPECT_NE(std::string(error.what()).find("expected an 8-bit 3-channel image"), std::string::npos);
    }
  }
  const cv::Mat small_mask(frame.rows / 2, frame.cols, CV_8UC1, cv::Scalar(1));
  try {
    video.start(image_view(frame), image_view(small_mask));
    ADD_FAILURE() << "no error";
  } catch (const simvos::InputError& error) {
    EXPECT_EQ(std::string(error.what()), "mask: 64x192 but the frame is 128x192; give the first frame's mask at the "
                                         "frame's size");
  }
  EXPECT_THROW(video.step(image_view(frame)), simvos::InputError);  // never started
  EXPECT_THROW(client.video("line\nbreak"), simvos::InputError);
  EXPECT_THROW(client.video(std::string(129, 'x')), simvos::InputError);
  EXPECT_FALSE(video.is_open());
}

TEST(Client, VideosSkipAServerThatCannotBeReachedAtStart) {
  SIMVOS_SERVED(served);
  const std::string dead = "127.0.0.1:1";  // nothing listens on port 1 here
  simvos::Client client(dead + "," + served->url);
  EXPECT_EQ(client.servers(), (std::vector<std::string>{dead, served->url}));
  const cv::Mat frame = golden_frame(*served, 0);
  const simvos::Labels mask = golden_mask(*served);
  for (int i = 0; i < 24; ++i) {  // about half rank the dead server first: every video ends up on the live one
    simvos::Video video = client.video("skip-" + std::to_string(i));
    video.start(image_view(frame), mask.view());
    EXPECT_EQ(video.server(), served->url);
  }
}

TEST(Video, FailsOverWhenItsServerDies) {  // last: it kills the spare server
  SIMVOS_SERVED(served);
  const simvos::Labels mask = golden_mask(*served);
  simvos::Client client({served->url, served->spare});
  std::vector<cv::Mat> frames;
  for (std::size_t t = 0; t < kGoldenFrames; ++t) frames.push_back(golden_frame(*served, t));
  const std::size_t kill_before = 3;  // the spare dies mid-video, between frames 2 and 3
  simvos::StartOptions options;
  options.bgr = true;
  std::vector<simvos::Result> got;
  for (int i = 0; got.empty() && i < 64; ++i) {  // a video that rendezvous hashing places on the spare
    simvos::Video video = client.video("failover-" + std::to_string(i));
    simvos::Result first = video.start(image_view(frames[0]), mask.view(), options);
    if (video.server() != served->spare) continue;
    got.push_back(first);
    for (std::size_t t = 1; t < frames.size(); ++t) {
      if (t == kill_before) {
        ASSERT_TRUE(simvos::testing::kill_spare());
      }
      got.push_back(video.step(image_view(frames[t])));
    }
    EXPECT_EQ(video.server(), served->url);
    EXPECT_EQ(video.moves(), 1);
  }
  ASSERT_EQ(got.size(), kGoldenFrames) << "no video id placed on the spare server";
  for (std::size_t t = 0; t < got.size(); ++t)  // the state the video keeps makes the resume exact
    EXPECT_EQ(got[t].labels.data, python_labels(*served, t).data) << "frame " << t;  // an uninterrupted run's
}
