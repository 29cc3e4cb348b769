// simvos-segment-cpp: simvos-segment --server in C++ (the same options, the same PNGs and output folder).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "atomic_file.hpp"
#include "frames.hpp"
#include "index_png.hpp"
#include "simvos/client.hpp"

namespace fs = std::filesystem;

namespace {

constexpr const char* kProg = "simvos-segment-cpp";
constexpr const char* kOwnerFile = ".simvos-trt.json";  // simvos_trt.io.OWNER_FILE
constexpr const char* kOwnerTool = "simvos-segment";    // the Python tool's name: both write the same folders
constexpr int kExitOk = 0, kExitError = 2;

constexpr const char* kHelp = R"(usage: simvos-segment-cpp --server HOST:PORT[,HOST:PORT...] --input VIDEO_OR_FOLDER --mask FIRST.png
                          --out OUTDIR [--force] [--bgr | --no-bgr] [--json]

Segment the objects of a video's first-frame mask in every frame through simvos-serve servers, as
simvos-segment --server does: one palette PNG per frame, byte for byte the same, then a summary line.

options:
  --server HOST:PORT[,...]  simvos-serve servers, at their gRPC ports (default 8001); each video is placed on one
                            of them, chosen by its id; one that cannot be reached at the start is skipped
  --input VIDEO_OR_FOLDER   a folder of frames (.jpg/.jpeg/.png, in natural name order: 2 before 10) or a video
                            file OpenCV can read
  --mask FIRST.png          the first frame's index mask: a palette PNG (as DAVIS annotations) or an 8-bit
                            grayscale PNG of ids; 0 is background, objects are any ids 1..255, at the frames' size
  --out OUTDIR              output folder: one palette PNG per frame, named after the frame (00000.png, ... for a
                            video), with the mask's ids and palette, each written atomically; only a new or empty
                            folder, or one of an earlier simvos-segment run (its old masks removed first), is written
  --force                   replace the masks of another video in --out (default: off)
  --bgr, --no-bgr           decoded frames are in OpenCV's BGR order; --no-bgr passes the channels as they are
                            (for files stored with red and blue swapped) (default: --bgr)
  --json                    print the summary as JSON instead of one line (default: off)
  -h, --help                show this help and exit

exit codes: 0 done, 2 an error (one line on stderr)
)";

struct Args {
  std::string servers;
  fs::path input, mask, out;
  bool force = false, bgr = true, json = false;
};

Args parse(int argc, char** argv) {
  Args args;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw simvos::InputError(std::string("argument ") + argv[i] + ": expected one value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kHelp;
      std::exit(kExitOk);
    } else if (arg == "--server") {
      args.servers = value(i);
    } else if (arg == "--input") {
      args.input = value(i);
    } else if (arg == "--mask") {
      args.mask = value(i);
    } else if (arg == "--out") {
      args.out = value(i);
    } else if (arg == "--force") {
      args.force = true;
    } else if (arg == "--bgr" || arg == "--no-bgr") {
      args.bgr = arg == "--bgr";
    } else if (arg == "--json") {
      args.json = true;
    } else {
      throw simvos::InputError("unrecognized argument '" + arg + "' (see --help)");
    }
  }
  for (const auto& [given, name] : {std::pair{!args.servers.empty(), "--server"}, {!args.input.empty(), "--input"},
                                    {!args.mask.empty(), "--mask"}, {!args.out.empty(), "--out"}})
    if (!given) throw simvos::InputError(std::string("the argument ") + name + " is required (see --help)");
  return args;
}

nlohmann::ordered_json owner(const fs::path& input) {
  return {{"tool", kOwnerTool}, {"source", "video " + fs::weakly_canonical(fs::absolute(input)).string()}};
}

//! As simvos_trt.io.claim_folder: --out is new, empty, or an earlier simvos-segment run's (of this video unless
//! --force), and no input lies in it; the old masks are removed.
void claim_output(const Args& args) {
  const fs::path out = fs::weakly_canonical(fs::absolute(args.out));
  for (const fs::path& given : {args.input, args.mask}) {
    const fs::path input = fs::weakly_canonical(fs::absolute(given));
    const auto [a, b] = std::mismatch(out.begin(), out.end(), input.begin(), input.end());
    if (a == out.end() || b == input.end())
      throw simvos::InputError("--out " + args.out.string() + " is, holds or lies inside the input " +
                               given.string() + "; choose another folder");
  }
  if (fs::exists(out) && !fs::is_directory(out))
    throw simvos::InputError("--out " + args.out.string() + " is a file, not a folder; choose another path");
  if (fs::is_directory(out) && !fs::is_empty(out)) {
    std::ifstream file(out / kOwnerFile);
    const nlohmann::json found = nlohmann::json::parse(file, nullptr, false);  // discarded: no file, or not JSON
    if (!found.is_object() || !found.contains("tool"))
      throw simvos::InputError("--out " + args.out.string() + " holds files that " + kOwnerTool +
                               " did not write; it is left alone (even with --force): choose a new or empty folder");
    if (found["tool"] != kOwnerTool)
      throw simvos::InputError("--out " + args.out.string() + " holds the output of " + found["tool"].dump() +
                               "; choose another folder");
    if (!args.force && found.value("source", "") != owner(args.input)["source"])
      throw simvos::InputError("--out " + args.out.string() + " already holds the output of " +
                               found.value("source", "") + "; pass --force to replace it, or choose another folder");
    for (const auto& entry : fs::directory_iterator(out))
      if (entry.path().extension() == ".png") fs::remove(entry.path());
  }
  fs::create_directories(out);
  simvos::write_atomic((out / kOwnerFile).string(), owner(args.input).dump(1, ' ', true) + "\n");
}

simvos::ImageView view(const cv::Mat& image) {
  return {image.data, image.rows, image.cols, image.channels(), static_cast<int>(image.elemSize1()), image.step};
}

//! numpy.percentile's default (linear interpolation between the closest ranks).
double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double rank = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto low = static_cast<std::size_t>(std::floor(rank));
  const std::size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (rank - static_cast<double>(low)) * (values[high] - values[low]);
}

int segment(const Args& args) {
  const std::vector<std::string> servers = simvos::parse_servers(args.servers);
  simvos::FrameSource source(args.input, args.mask);
  const simvos::png::IndexImage first = simvos::png::read_index_png(args.mask.string());
  claim_output(args);
  simvos::Client client(servers);
  simvos::Video video = client.video();
  std::vector<double> ms;
  std::size_t frames = 0;
  std::string name;
  cv::Mat frame;
  while (source.next(name, frame)) {
    const auto t0 = std::chrono::steady_clock::now();
    simvos::Result result;
    if (++frames == 1) {
      simvos::StartOptions options;
      options.bgr = args.bgr;
      result = video.start(view(frame), first.labels.view(), options);
    } else {
      result = video.step(view(frame));
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    simvos::png::write_index_png((args.out / (name + ".png")).string(), result.labels, first.palette,
                                 first.palette_size);
  }
  video.end();
  double mean = 0;
  for (const double value : ms) mean += value / static_cast<double>(ms.size());
  const std::string backend = "simvos-serve at " + args.servers;
  if (args.json) {
    nlohmann::ordered_json summary = {{"frames", frames}, {"objects", video.object_ids().size()},
                                      {"backend", backend}, {"ms_per_frame_mean", nullptr},
                                      {"ms_per_frame_p90", nullptr}, {"out", args.out.string()}, {"overlay", nullptr}};
    if (!ms.empty()) {
      summary["ms_per_frame_mean"] = mean;
      summary["ms_per_frame_p90"] = percentile(ms, 90);
    }
    std::cout << summary.dump(1) << "\n";
    return kExitOk;
  }
  char timing[96] = "no propagated frame";
  if (!ms.empty()) std::snprintf(timing, sizeof timing, "%.1f ms/frame mean, %.1f ms p90", mean, percentile(ms, 90));
  std::cout << kProg << ": " << frames << " frames, " << video.object_ids().size() << " objects, " << timing << " ("
            << backend << ", frames after the first); masks in " << args.out.string() << "\n";
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return segment(parse(argc, argv));
  } catch (const std::exception& error) {  // simvos::Error, a filesystem error, a cv::Exception, bad_alloc
    std::string text = error.what();
    std::replace(text.begin(), text.end(), '\n', ' ');
    std::cerr << kProg << ": error: " << text << "\n";
    return kExitError;
  }
}
