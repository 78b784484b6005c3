// ort_runner: run an ibit-deploy bundle's ONNX model with the ONNX Runtime C++ API (CPU).
//
//   ort_runner --model model.onnx [--input x.npy | --input x.f32] [--batch N] [--out logits.npy]
//              [--iters N] [--warmup N] [--threads N] [--topk K] [--json report.json]
//   ort_runner --model BUNDLE/model.onnx --manifest BUNDLE/manifest.json IMAGE.png|IMAGE.jpg ...
//              [--topk K] [--out logits.npy] [--dump-input x.npy] [--iters N] [--warmup N] [--stages-json PATH|-]
//
// Tensor input: a float32 NCHW .npy, a raw float32 file (batch = size / C*H*W), or (no --input) --batch random
// normal samples, already preprocessed. Prints the top-k classes per sample, writes the logits (.npy, or raw float32
// for any other suffix), and with --iters times that many session.Run calls (after --warmup untimed ones) with
// std::chrono::steady_clock, reporting p50/p90/p99.
//
// Image input (PNG / JPEG files, one batch): decoded and preprocessed exactly as the bundle's manifest.json says
// (image_pipeline.h), then the top-k class names and probabilities per file. --dump-input writes the preprocessed
// batch; with --iters N (default 20 with --stages-json) each stage of N whole runs is timed, and --stages-json
// writes {"runner", "stages": {stage: {"p50_ms", "p99_ms", ...}}, "end_to_end": {...}} ("-": stdout).
#include <onnxruntime_cxx_api.h>

#include <chrono>

#include "image_pipeline.h"
#include "runner_common.h"

namespace {

const char* kUsage =
    "usage: ort_runner --model model.onnx [--input x.npy|x.f32] [--batch N] [--out logits.npy] [--iters N]\n"
    "                  [--warmup N] [--threads N] [--topk K] [--json report.json]\n"
    "       ort_runner --model model.onnx --manifest manifest.json IMAGE... [--topk K] [--out logits.npy]\n"
    "                  [--dump-input x.npy] [--iters N] [--warmup N] [--threads N] [--stages-json PATH|-]\n";

// The session and its tensor names.
struct OrtSession {
    Ort::Session& session;
    const char* input_name;
    const char* output_name;
};

// One run: images -> batch -> Session::Run -> top-k, every stage timed into `times`.
ibit::Tensor infer_images(OrtSession& ort, const std::vector<std::string>& images, const ibit::Preprocessing& prep,
                          ibit::StageTimes& times, ibit::Tensor* batch_out, std::vector<ibit::TopK>* tops, int topk) {
    const auto start = std::chrono::steady_clock::now();
    ibit::Tensor batch = ibit::images_to_batch(images, prep, times);
    ibit::Tensor logits;
    times.time("inference", [&] {
        const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
        Ort::Value tensor = Ort::Value::CreateTensor<float>(memory, batch.data.data(), batch.data.size(),
                                                            batch.shape.data(), batch.shape.size());
        std::vector<Ort::Value> outputs =
            ort.session.Run(Ort::RunOptions{nullptr}, &ort.input_name, &tensor, 1, &ort.output_name, 1);
        logits.shape = outputs[0].GetTensorTypeAndShapeInfo().GetShape();
        const float* out = outputs[0].GetTensorData<float>();
        logits.data.assign(out, out + ibit::numel(logits.shape));
    });
    std::vector<ibit::TopK> ranked = times.time("postprocess", [&] { return ibit::top_k(logits, topk); });
    times.add_end_to_end(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    if (batch_out) *batch_out = std::move(batch);
    if (tops) *tops = std::move(ranked);
    return logits;
}

int run_images(OrtSession& ort, const std::map<std::string, std::string>& args, const std::vector<std::string>& images,
               const std::vector<int64_t>& chw, int iters, int warmup, int threads, int topk) {
    const std::string manifest = args.at("--manifest");
    const ibit::Preprocessing prep = ibit::read_preprocessing(manifest);
    ibit::check_model_input(prep, chw, manifest);
    ibit::StageTimes times;
    ibit::Tensor batch;
    std::vector<ibit::TopK> tops;
    const ibit::Tensor logits = infer_images(ort, images, prep, times, &batch, &tops, topk);
    if (topk > 0) ibit::print_labels(images, tops, prep.classes);
    if (args.count("--out")) ibit::write_output(args.at("--out"), logits);
    if (args.count("--dump-input")) ibit::write_output(args.at("--dump-input"), batch);

    for (int i = 0; i < warmup; ++i) infer_images(ort, images, prep, times, nullptr, nullptr, topk);
    times.clear();
    for (int i = 0; i < iters; ++i) infer_images(ort, images, prep, times, nullptr, nullptr, topk);
    if (args.count("--stages-json")) {
        std::ostringstream about;
        about << "\"runner\": \"ort_runner\", \"backend\": \"onnxruntime-cpp\", \"ort_version\": "
              << ibit::json_string(Ort::GetVersionString()) << ", \"model\": " << ibit::json_string(args.at("--model"))
              << ", \"batch\": " << images.size() << ", \"threads\": " << threads << ", \"warmup\": " << warmup
              << ", \"repeats\": " << iters;
        ibit::write_stages_report(args.at("--stages-json"), about.str(), times);
    }
    return 0;
}

int run(int argc, char** argv) {
    std::vector<std::string> images;
    const auto args = ibit::parse_args(argc, argv,
                                       {"--model", "--input", "--batch", "--out", "--iters", "--warmup", "--threads",
                                        "--topk", "--json", "--manifest", "--dump-input", "--stages-json"},
                                       {"--help", "-h"}, &images);
    if (args.count("--help") || args.count("-h")) {
        std::cout << kUsage;
        return 0;
    }
    if (!args.count("--model")) throw std::invalid_argument("--model is required");
    const std::string model = args.at("--model");
    ibit::check_image_arguments(args, images);
    const int batch = ibit::to_int(args, "--batch", 1, 1);
    const int iters = ibit::to_int(args, "--iters", args.count("--stages-json") ? 20 : 0, 0);
    const int warmup = ibit::to_int(args, "--warmup", iters ? 10 : 0, 0), threads = ibit::to_int(args, "--threads", 1, 0);
    const int topk = ibit::to_int(args, "--topk", 5, 0);

    Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "ort_runner");
    Ort::SessionOptions options;
    options.SetIntraOpNumThreads(threads);  // 0 = ONNX Runtime's default (one per physical core)
    options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    Ort::Session session(env, model.c_str(), options);
    if (session.GetInputCount() != 1 || session.GetOutputCount() < 1)
        throw std::runtime_error(model + ": expected one input and at least one output");

    Ort::AllocatorWithDefaultOptions allocator;
    const Ort::AllocatedStringPtr input_name = session.GetInputNameAllocated(0, allocator);
    const Ort::AllocatedStringPtr output_name = session.GetOutputNameAllocated(0, allocator);
    const Ort::TypeInfo type_info = session.GetInputTypeInfo(0);  // owns what the shape info below points into
    const auto input_info = type_info.GetTensorTypeAndShapeInfo();
    const std::vector<int64_t> model_shape = input_info.GetShape();
    if (input_info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || model_shape.size() != 4)
        throw std::runtime_error(model + ": input '" + input_name.get() + "' should be float32 NCHW, found shape " +
                                 ibit::shape_str(model_shape));
    const std::vector<int64_t> chw(model_shape.begin() + 1, model_shape.end());
    if (!images.empty()) {
        OrtSession ort{session, input_name.get(), output_name.get()};
        return run_images(ort, args, images, chw, iters, warmup, threads, topk);
    }

    ibit::Tensor input = ibit::load_input(args.count("--input") ? args.at("--input") : "", batch, chw);
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value tensor = Ort::Value::CreateTensor<float>(memory, input.data.data(), input.data.size(),
                                                        input.shape.data(), input.shape.size());
    const char* input_names[] = {input_name.get()};
    const char* output_names[] = {output_name.get()};
    auto infer = [&]() { return session.Run(Ort::RunOptions{nullptr}, input_names, &tensor, 1, output_names, 1); };

    std::vector<Ort::Value> outputs = infer();
    ibit::Tensor logits;
    logits.shape = outputs[0].GetTensorTypeAndShapeInfo().GetShape();  // an owned copy: safe from a temporary
    const float* out = outputs[0].GetTensorData<float>();
    logits.data.assign(out, out + ibit::numel(logits.shape));
    std::cout << "model: " << model << "\ninput: " << input_name.get() << " " << ibit::shape_str(input.shape)
              << "\noutput: " << output_name.get() << " " << ibit::shape_str(logits.shape) << "\n";
    if (topk > 0) ibit::print_topk(logits, topk);
    if (args.count("--out")) ibit::write_output(args.at("--out"), logits);

    std::vector<double> times_ms;
    for (int i = 0; i < warmup; ++i) infer();
    for (int i = 0; i < iters; ++i) {
        const auto start = std::chrono::steady_clock::now();
        infer();
        times_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    if (iters) {
        std::cout << "latency_ms (" << iters << " runs, batch " << input.shape[0] << ", " << threads
                  << " threads): " << ibit::stats_json(times_ms) << "\n";
    }
    if (args.count("--json")) {
        std::ofstream f(args.at("--json"));
        f << "{\"backend\": \"onnxruntime-cpp\", \"ort_version\": " << ibit::json_string(Ort::GetVersionString())
          << ", \"model\": " << ibit::json_string(model) << ", \"batch\": " << input.shape[0]
          << ", \"threads\": " << threads << ", \"warmup\": " << warmup << ", \"iterations\": " << iters
          << ", \"latency_ms\": " << ibit::stats_json(times_ms) << ", \"times_ms\": " << ibit::list_json(times_ms)
          << "}\n";
        if (!f) throw std::runtime_error("failed writing " + args.at("--json"));
    }
    return 0;
}

}  // namespace

// ONNX Runtime's own errors keep a prefix saying where they came from.
int run_naming_ort_errors(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const Ort::Exception& e) {
        throw std::runtime_error(std::string("ONNX Runtime error: ") + e.what());
    }
}

int main(int argc, char** argv) { return ibit::guarded_main("ort_runner", kUsage, run_naming_ort_errors, argc, argv); }
