// Image files in, labels out, each stage timed: what both runners do with image arguments.
//
// Stages, in order (a runner records only the ones it has: the ONNX Runtime CPU runner has no copies):
//   read         the files' bytes into memory
//   decode       PNG / JPEG -> 8-bit pixels (image_decode.h)
//   preprocess   channel order, resize, normalise into one float32 NCHW batch (preprocess.h)
//   h2d          host-to-device copy of the batch
//   inference    the model (ONNX Runtime Session::Run / TensorRT enqueueV3)
//   d2h          device-to-host copy of the logits
//   postprocess  softmax, top-k, class names
// Every stage is wall time on the host (std::chrono::steady_clock; GPU stages end with a stream synchronise), and
// end to end is the wall time of one whole run, so the stages of a run add up to it.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "image_decode.h"
#include "preprocess.h"
#include "runner_common.h"

namespace ibit {

// The stage names, in the order a run goes through them.
inline const std::vector<std::string>& stage_names() {
    static const std::vector<std::string> names = {"read", "decode", "preprocess", "h2d", "inference", "d2h",
                                                   "postprocess"};
    return names;
}

// Per-stage times (ms) of the timed runs, and each run's end-to-end time.
class StageTimes {
public:
    // Run `work` and add its wall time to `stage`; returns what `work` returns.
    template <class F>
    auto time(const std::string& stage, F&& work) -> decltype(work()) {
        const auto start = std::chrono::steady_clock::now();
        struct Record {
            StageTimes* self;
            const std::string& stage;
            std::chrono::steady_clock::time_point start;
            ~Record() { self->add(stage, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count()); }
        } record{this, stage, start};
        return work();
    }

    void add(const std::string& stage, double ms) {
        for (auto& s : stages_)
            if (s.first == stage) return s.second.push_back(ms);
        stages_.emplace_back(stage, std::vector<double>{ms});
    }
    void add_end_to_end(double ms) { end_to_end_.push_back(ms); }
    void clear() {
        stages_.clear();
        end_to_end_.clear();
    }

    // {"stages": {stage: {"p50_ms", "p99_ms", "mean_ms"}}, "end_to_end": {...}, "iterations": {stage: [ms...],
    // "end_to_end": [ms...]}} members (without the braces).
    std::string json_members() const {
        std::ostringstream s;
        s << "\"stages\": {";
        bool first = true;
        for (const auto& name : stage_names()) {
            for (const auto& st : stages_) {
                if (st.first != name) continue;
                s << (first ? "" : ", ") << json_string(name) << ": " << summary(st.second);
                first = false;
            }
        }
        s << "}, \"end_to_end\": " << summary(end_to_end_);
        // every timed run's times, stage by stage (index i is run i), so a caller can compute its own statistics
        // (ibit-bench --end-to-end --cpp-runner summarises them exactly as it does the Python runtime's)
        s << ", \"iterations\": {";
        first = true;
        for (const auto& name : stage_names()) {
            for (const auto& st : stages_) {
                if (st.first != name) continue;
                s << (first ? "" : ", ") << json_string(name) << ": " << list_json(st.second);
                first = false;
            }
        }
        s << (first ? "" : ", ") << "\"end_to_end\": " << list_json(end_to_end_) << "}";
        return s.str();
    }

private:
    std::vector<std::pair<std::string, std::vector<double>>> stages_;
    std::vector<double> end_to_end_;

    static std::string summary(const std::vector<double>& ms) {
        std::ostringstream s;
        s << std::setprecision(6) << "{\"p50_ms\": " << percentile(ms, 50) << ", \"p99_ms\": " << percentile(ms, 99)
          << ", \"mean_ms\": " << (ms.empty() ? NAN : std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size()))
          << ", \"count\": " << ms.size() << "}";
        return s.str();
    }
};

// The model's input (C, H, W) must be what the manifest's preprocessing produces (a dynamic dimension, < 0, takes any).
inline void check_model_input(const Preprocessing& p, const std::vector<int64_t>& chw, const std::string& manifest) {
    const int64_t want[3] = {p.channels, p.height, p.width};
    bool fits = chw.size() == 3;
    for (size_t i = 0; fits && i < 3; ++i) fits = chw[i] < 0 || chw[i] == want[i];
    if (!fits)
        throw BadInput(manifest + ": preprocessing makes " + std::to_string(p.channels) + "x" + std::to_string(p.height) +
                       "x" + std::to_string(p.width) + " inputs but the model takes " + shape_str(chw) +
                       "; use the manifest of the model's own bundle");
}

// read, decode, preprocess: the files at `paths` as one float32 NCHW batch.
inline Tensor images_to_batch(const std::vector<std::string>& paths, const Preprocessing& p, StageTimes& times) {
    const std::vector<std::string> bytes = times.time("read", [&] {
        std::vector<std::string> out;
        for (const auto& path : paths) {
            try {
                out.push_back(read_file(path));
            } catch (const std::runtime_error& e) {
                throw BadInput(e.what());
            }
        }
        return out;
    });
    std::vector<Image> images = times.time("decode", [&] {
        std::vector<Image> out;
        for (size_t i = 0; i < paths.size(); ++i) out.push_back(decode_image(bytes[i], paths[i]));
        return out;
    });
    return times.time("preprocess", [&] {
        Tensor t;
        t.shape = {static_cast<int64_t>(paths.size()), p.channels, p.height, p.width};
        t.data.resize(static_cast<size_t>(numel(t.shape)));
        const int64_t per_image = static_cast<int64_t>(p.channels) * p.height * p.width;
        for (size_t i = 0; i < images.size(); ++i) {
            Image img = to_channel_order(std::move(images[i]), p.channel_order);
            const std::vector<uint8_t> resized =
                resize_bilinear_aa(std::move(img.pixels), img.height, img.width, img.channels, p.height, p.width);
            normalise_into(resized, p, t.data.data() + static_cast<int64_t>(i) * per_image);
        }
        return t;
    });
}

// One image's most probable classes: (class index, softmax probability), most probable first.
using TopK = std::vector<std::pair<int64_t, double>>;

// Softmax over each row of `logits` (in double, as Predictor does) and its `k` most probable classes.
inline std::vector<TopK> top_k(const Tensor& logits, int k) {
    const int64_t rows = logits.shape[0], classes = logits.shape.back();
    std::vector<TopK> out;
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = logits.data.data() + r * classes;
        const double top = *std::max_element(row, row + classes);
        std::vector<double> prob(static_cast<size_t>(classes));
        double total = 0.0;
        for (int64_t c = 0; c < classes; ++c) total += prob[static_cast<size_t>(c)] = std::exp(row[c] - top);
        std::vector<int64_t> idx(static_cast<size_t>(classes));
        std::iota(idx.begin(), idx.end(), 0);
        const int64_t kk = std::min<int64_t>(std::max(k, 1), classes);
        std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](int64_t a, int64_t b) {
            return prob[static_cast<size_t>(a)] > prob[static_cast<size_t>(b)] ||
                   (prob[static_cast<size_t>(a)] == prob[static_cast<size_t>(b)] && a < b);  // first index on ties
        });
        TopK top_classes;
        for (int64_t i = 0; i < kk; ++i) top_classes.emplace_back(idx[i], prob[static_cast<size_t>(idx[i])] / total);
        out.push_back(std::move(top_classes));
    }
    return out;
}

// "<path>: <label> (<probability>) ..." per image, labels from the manifest's classes (their index without).
inline void print_labels(const std::vector<std::string>& paths, const std::vector<TopK>& tops,
                         const std::vector<std::string>& classes) {
    for (size_t i = 0; i < paths.size(); ++i) {
        std::cout << paths[i] << ":";
        for (const auto& [index, prob] : tops[i]) {
            const std::string label = index < static_cast<int64_t>(classes.size()) ? classes[static_cast<size_t>(index)]
                                                                                   : std::to_string(index);
            std::cout << " " << label << " (" << std::fixed << std::setprecision(5) << prob << ")" << std::defaultfloat;
        }
        std::cout << "\n";
    }
}

// Image files go with --manifest (their preprocessing) and not with the tensor-only options.
inline void check_image_arguments(const std::map<std::string, std::string>& args,
                                  const std::vector<std::string>& images) {
    if (images.empty()) {
        for (const char* key : {"--manifest", "--dump-input", "--stages-json"})
            if (args.count(key)) throw std::invalid_argument(std::string(key) + " needs image files (IMAGE...)");
        return;
    }
    if (!args.count("--manifest"))
        throw std::invalid_argument("image files need --manifest BUNDLE/manifest.json (their preprocessing)");
    for (const char* key : {"--input", "--batch", "--json"})
        if (args.count(key)) throw std::invalid_argument(std::string(key) + " is for tensor input, not image files");
}

// {<about>, "stages": ..., "end_to_end": ...} to `path` ("-": stdout); `about` holds the runner's own members.
inline void write_stages_report(const std::string& path, const std::string& about, const StageTimes& times) {
    const std::string report = "{" + about + ", " + times.json_members() + "}\n";
    if (path == "-") {
        std::cout << report;
        return;
    }
    std::ofstream f(path);
    f << report;
    if (!f) throw std::runtime_error("failed writing " + path);
}

}  // namespace ibit
