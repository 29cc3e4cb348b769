// simvos-segment-cpp: simvos-segment --server in C++ (the same options, the same PNGs and output folder).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "file_io.hpp"
#include "frames.hpp"
#include "index_png.hpp"
#include "simvos/client.hpp"

namespace fs = std::filesystem;

namespace {

constexpr const char* kProg = "simvos-segment-cpp";
constexpr const char* kOwnerFile = ".simvos-trt.json";  // simvos_trt.io.OWNER_FILE
constexpr const char* kOwnerTool = "simvos-segment";    // the Python tool's name: both write the same folders
constexpr int kExitOk = 0, kExitError = 2;

constexpr const char* kHelp = R"(usage: simvos-segment-cpp --server HOST:PORT[,HOST:PORT...] --input VIDEO_OR_FOLDER
                          (--mask FRAME.png [--mask FRAME.png ...] | --masks DIR) --out OUTDIR [--force]
                          [--bgr | --no-bgr] [--json]

Segment the objects of a video's annotated masks in every frame through simvos-serve servers, as
simvos-segment --server does: one palette PNG per frame, byte for byte the same, then a summary line.

options:
  --server HOST:PORT[,...]  simvos-serve servers, at their gRPC ports (default 8001); each video is placed on one
                            of them, chosen by its id; one that cannot be reached at the start is skipped
  --input VIDEO_OR_FOLDER   a folder of frames (.jpg/.jpeg/.png, in natural name order: 2 before 10) or a video
                            file OpenCV can read
  --mask FRAME.png          an index mask: a palette PNG (as DAVIS annotations) or an 8-bit grayscale PNG of ids
                            (0 states nothing, objects are ids 1..255), at the frames' size, named after the frame
                            it annotates (00000.png for a video's first frame), repeated for later frames, where
                            new ids join and known ids are corrected; frames before the first annotated one get
                            empty masks. A single mask named after no frame is the first frame's
  --masks DIR               a folder of such masks (*.png), each named after the frame it annotates
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
  fs::path input, masks, out;
  std::vector<fs::path> mask;
  bool force = false, bgr = true, json = false;
  bool help = false;  // -h/--help: print kHelp, nothing else
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
      args.help = true;
      return args;
    } else if (arg == "--server") {
      args.servers = value(i);
    } else if (arg == "--input") {
      args.input = value(i);
    } else if (arg == "--mask") {
      args.mask.emplace_back(value(i));
    } else if (arg == "--masks") {
      args.masks = value(i);
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
                                    {!args.mask.empty() || !args.masks.empty(), "--mask or --masks"},
                                    {!args.out.empty(), "--out"}})
    if (!given) throw simvos::InputError(std::string("the argument ") + name + " is required (see --help)");
  if (!args.mask.empty() && !args.masks.empty())
    throw simvos::InputError("argument --masks: not allowed with argument --mask");
  return args;
}

nlohmann::ordered_json owner(const fs::path& input) {
  return {{"tool", kOwnerTool}, {"source", "video " + fs::weakly_canonical(fs::absolute(input)).string()}};
}

//! As simvos_trt.io.claim_folder: --out is new, empty, or an earlier simvos-segment run's (of this video unless
//! --force), and no input lies in it; the old masks are removed.
void claim_output(const Args& args, const std::vector<fs::path>& mask_files) {
  const fs::path out = fs::weakly_canonical(fs::absolute(args.out));
  std::vector<fs::path> inputs = mask_files;
  inputs.push_back(args.input);
  for (const fs::path& given : inputs) {
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

//! The mean as the Python tool sums it (each value divided first).
double mean(const std::vector<double>& values) {
  double sum = 0;
  for (const double value : values) sum += value / static_cast<double>(values.size());
  return sum;
}

//! numpy.percentile's default (linear interpolation between the closest ranks).
double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double rank = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto low = static_cast<std::size_t>(std::floor(rank));
  const std::size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (rank - static_cast<double>(low)) * (values[high] - values[low]);
}

//! Python's repr of a list of names: ['a', 'b'].
std::string listed(const std::vector<std::string>& names) {
  std::string text = "[";
  for (const std::string& name : names) text += (text.size() > 1 ? ", '" : "'") + name + "'";
  return text + "]";
}

//! Index masks by the name of the frame each annotates.
using Annotations = std::vector<std::pair<std::string, simvos::png::IndexImage>>;

//! The masks by the name of the frame they annotate, in frame order (as simvos-segment's read_annotations):
//! a single mask named after no frame annotates the first; a folder's frames are known up front, so a mask
//! naming none of them is refused here.
Annotations read_annotations(std::vector<fs::path> files, const simvos::FrameSource& source) {
  const std::vector<std::string> names = source.names();
  auto is_frame = [&](const std::string& stem) {  // a video's frames are 00000, 00001...: any digits
    if (source.is_video())
      return !stem.empty() && std::all_of(stem.begin(), stem.end(), [](unsigned char c) { return std::isdigit(c); });
    return std::find(names.begin(), names.end(), stem) != names.end();
  };
  if (files.size() == 1 && !is_frame(files[0].stem()))
    return {{source.is_video() ? simvos::video_frame_name(0) : names.front(),
             simvos::png::read_index_png(files[0].string())}};
  std::vector<std::string> stems, twice, unknown;
  for (const fs::path& file : files) stems.push_back(file.stem());
  for (const std::string& stem : std::set<std::string>(stems.begin(), stems.end())) {
    if (std::count(stems.begin(), stems.end(), stem) > 1) twice.push_back(stem);
    if (!source.is_video() && !is_frame(stem)) unknown.push_back(stem);
  }
  if (!twice.empty())
    throw simvos::InputError("masks: several masks annotate frames " + listed(twice) + "; give one mask per frame");
  if (!unknown.empty())
    throw simvos::InputError("masks " + listed(unknown) + " name no frame of " + source.path().string() +
                             "; name each mask after the frame it annotates (its frames are " + names.front() +
                             " .. " + names.back() + ")");
  auto position = [&](const fs::path& file) {
    return std::find(names.begin(), names.end(), file.stem().string()) - names.begin();
  };
  std::sort(files.begin(), files.end(), [&](const fs::path& a, const fs::path& b) {
    return source.is_video() ? simvos::natural_less(a.filename(), b.filename()) : position(a) < position(b);
  });
  Annotations annotations;
  for (const fs::path& file : files) annotations.emplace_back(file.stem(), simvos::png::read_index_png(file.string()));
  return annotations;
}

std::vector<fs::path> mask_files(const Args& args) {
  if (args.masks.empty()) return args.mask;
  std::vector<fs::path> files;
  if (fs::is_directory(args.masks))
    for (const auto& entry : fs::directory_iterator(args.masks))
      if (entry.path().extension() == ".png") files.push_back(entry.path());
  if (files.empty()) throw simvos::InputError("--masks " + args.masks.string() + ": no .png mask in this folder");
  std::sort(files.begin(), files.end());
  return files;
}

//! The one-line summary, or with --json the summary as simvos-segment --json prints it.
void print_summary(const Args& args, std::size_t frames, std::size_t objects, const std::vector<double>& step_ms) {
  const std::string backend = "simvos-serve at " + args.servers;
  if (args.json) {
    nlohmann::ordered_json summary = {{"frames", frames}, {"objects", objects},
                                      {"backend", backend}, {"ms_per_frame_mean", nullptr},
                                      {"ms_per_frame_p90", nullptr}, {"out", args.out.string()}, {"overlay", nullptr}};
    if (!step_ms.empty()) {
      summary["ms_per_frame_mean"] = mean(step_ms);
      summary["ms_per_frame_p90"] = percentile(step_ms, 90);
    }
    std::cout << summary.dump(1) << "\n";
    return;
  }
  char timing[96] = "no propagated frame";
  if (!step_ms.empty())
    std::snprintf(timing, sizeof timing, "%.1f ms/frame mean, %.1f ms p90", mean(step_ms), percentile(step_ms, 90));
  std::cout << kProg << ": " << frames << " frames, " << objects << " objects, " << timing << " (" << backend
            << ", frames after the first); masks in " << args.out.string() << "\n";
}

//! Every frame's labels written to --out as a palette PNG: empty before the first annotated frame, which starts
//! the video; then a step per frame, with the mask of each later annotated frame.
int segment(const Args& args) {
  const std::vector<std::string> servers = simvos::parse_servers(args.servers);
  const std::vector<fs::path> masks = mask_files(args);
  simvos::FrameSource source(args.input, masks);
  const Annotations annotations = read_annotations(masks, source);
  const simvos::png::IndexImage& first = annotations.front().second;  // its palette is the outputs'
  claim_output(args, masks);
  simvos::Client client(servers);
  simvos::Video video = client.video();
  std::vector<double> step_ms;  // each propagated frame's
  std::size_t frames = 0, next_annotation = 0;
  std::string name;
  cv::Mat frame;
  while (source.next(name, frame)) {
    ++frames;
    const auto t0 = std::chrono::steady_clock::now();
    const bool annotated = next_annotation < annotations.size() && annotations[next_annotation].first == name;
    const simvos::Labels* mask = annotated ? &annotations[next_annotation++].second.labels : nullptr;
    simvos::Result result;
    if (video.is_open()) {
      const simvos::ImageView view = simvos::image_view(frame);
      result = mask != nullptr ? video.step(view, mask->view()) : video.step(view);
      step_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    } else if (mask != nullptr) {
      simvos::StartOptions options;
      options.bgr = args.bgr;
      result = video.start(simvos::image_view(frame), mask->view(), options);
    } else {  // before the first annotation: no object yet
      result.labels = {frame.rows, frame.cols, std::vector<std::uint8_t>(frame.total(), 0)};
    }
    simvos::png::write_index_png((args.out / (name + ".png")).string(), result.labels, first.palette,
                                 first.palette_size);
  }
  const std::size_t objects = video.is_open() ? video.object_ids().size() : 0;
  video.end();
  if (next_annotation < annotations.size()) {
    std::vector<std::string> left;
    for (std::size_t i = next_annotation; i < annotations.size(); ++i) left.push_back(annotations[i].first);
    std::sort(left.begin(), left.end());
    throw simvos::InputError("masks " + listed(left) + " name no frame of " + args.input.string() + " (it has " +
                             std::to_string(frames) + " frames); name each mask after the frame it annotates");
  }
  print_summary(args, frames, objects, step_ms);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse(argc, argv);
    if (args.help) {
      std::cout << kHelp;
      return kExitOk;
    }
    return segment(args);
  } catch (const std::exception& error) {  // simvos::Error, a filesystem error, a cv::Exception, bad_alloc
    std::string text = error.what();
    std::replace(text.begin(), text.end(), '\n', ' ');
    std::cerr << kProg << ": error: " << text << "\n";
    return kExitError;
  }
}
