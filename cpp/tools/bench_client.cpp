// simvos-bench-client: the C++ half of benchmarks/cpp_client.py. Segments a folder of frames through a server
// and prints, per propagated frame, the wall time of Video::step and the CPU time this process spent in it.
//
//     simvos-bench-client HOST:PORT FRAMES_DIR MASK.png
#include <chrono>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "frames.hpp"
#include "index_png.hpp"
#include "simvos/client.hpp"

namespace {

constexpr int kExitError = 2;  // as simvos-segment-cpp

double cpu_ms() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);  // every thread of the process: gRPC's too
  return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: simvos-bench-client HOST:PORT FRAMES_DIR MASK.png\n";
    return kExitError;
  }
  try {
    simvos::FrameSource source(argv[2], {argv[3]});
    std::vector<cv::Mat> frames;  // all decoded first: only the steps are timed
    std::string name;
    for (cv::Mat frame; source.next(name, frame);) frames.push_back(frame.clone());
    const simvos::png::IndexImage mask = simvos::png::read_index_png(argv[3]);
    simvos::Client client(argv[1]);
    simvos::Video video = client.video();
    simvos::StartOptions options;
    options.bgr = true;
    video.start(simvos::image_view(frames.at(0)), mask.labels.view(), options);
    nlohmann::json wall = nlohmann::json::array(), cpu = nlohmann::json::array();
    for (std::size_t i = 1; i < frames.size(); ++i) {
      const double cpu0 = cpu_ms();
      const auto t0 = std::chrono::steady_clock::now();
      video.step(simvos::image_view(frames[i]));
      wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      cpu.push_back(cpu_ms() - cpu0);
    }
    video.end();
    std::cout << nlohmann::json{{"wall_ms", wall}, {"cpu_ms", cpu}}.dump() << "\n";
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "simvos-bench-client: error: " << error.what() << "\n";
    return kExitError;
  }
}
