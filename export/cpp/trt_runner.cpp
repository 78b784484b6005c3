// trt_runner: run a TensorRT engine (engine.plan, built on this device by the bundle's build_engine.sh).
//
//   trt_runner --engine engine.plan [--input x.npy | --input x.f32] [--batch N] [--out logits.npy]
//              [--iters N] [--warmup N] [--topk K] [--json report.json]
//   trt_runner --engine BUNDLE/engine.plan --manifest BUNDLE/manifest.json IMAGE.png|IMAGE.jpg ...
//              [--topk K] [--out logits.npy] [--dump-input x.npy] [--iters N] [--warmup N] [--stages-json PATH|-]
//
// createInferRuntime -> deserializeCudaEngine -> createExecutionContext -> setInputShape / setTensorAddress for
// every I/O tensor -> enqueueV3. Works with TensorRT 10.x and 11.x. With --iters, CUDA events time the
// host-to-device copy, the GPU compute (enqueueV3 alone) and the device-to-host copy of each run separately,
// reporting p50/p90/p99 of each, as trtexec separates them.
//
// Image files (PNG / JPEG, one batch) are decoded and preprocessed as the bundle's manifest.json says
// (image_pipeline.h) and labelled with its class names; with --iters every stage of a whole run is timed on the host
// (read, decode, preprocess, h2d, inference, d2h, postprocess; each GPU stage ends with a stream synchronise) and
// --stages-json writes them. Never run here: no GPU was available where this was written; it compiles against the
// TensorRT 10.3 and 11.x headers.
//
// Before deserializing, the engine's entry in the bundle's manifest.json (--manifest, else the manifest.json beside
// the engine) says which TensorRT built it and how compatible it is; an engine the installed TensorRT
// (getInferLibVersion) cannot run is refused with exit 3, naming both versions (engine_compat.h, the rule of
// devicekit/engine_compat.py). A version-compatible engine is deserialized with setEngineHostCodeAllowed(true) (its
// plan carries the lean runtime), or, built with --exclude-lean-runtime, through the lean runtime library given
// with --lean-runtime (IRuntime::loadRuntime). Untested on a GPU, like the rest of this file.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "engine_compat.h"
#include "image_pipeline.h"
#include "runner_common.h"

namespace {

const char* kUsage =
    "usage: trt_runner --engine engine.plan [--input x.npy|x.f32] [--batch N] [--out logits.npy] [--iters N]\n"
    "                  [--warmup N] [--topk K] [--json report.json]\n"
    "       trt_runner --engine engine.plan --manifest manifest.json IMAGE... [--topk K] [--out logits.npy]\n"
    "                  [--dump-input x.npy] [--iters N] [--warmup N] [--stages-json PATH|-]\n"
    "       either form: [--lean-runtime libnvinfer_lean.so] for an engine built with --exclude-lean-runtime\n";

void cuda_check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(status));
}

class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << msg << "\n";
    }
};

// Owns a device allocation.
struct DeviceBuffer {
    void* ptr = nullptr;
    explicit DeviceBuffer(size_t bytes) { cuda_check(cudaMalloc(&ptr, bytes ? bytes : 1), "cudaMalloc"); }
    ~DeviceBuffer() { cudaFree(ptr); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

int64_t volume(const nvinfer1::Dims& d) {
    int64_t v = 1;
    for (int i = 0; i < d.nbDims; ++i) v *= d.d[i];
    return v;
}

// The engine's context and I/O on one stream, sized for one batch shape.
struct Bound {
    nvinfer1::IExecutionContext& context;
    cudaStream_t stream;
    void* d_in;
    void* d_out;
};

// The manifest's record of `engine_path`: --manifest, else the manifest.json in the engine's folder (none: an empty
// record, and nothing is checked before TensorRT's own check).
ibit::EngineRecord manifest_record(const std::map<std::string, std::string>& args, const std::string& engine_path) {
    namespace fs = std::filesystem;
    const fs::path engine = fs::weakly_canonical(fs::path(engine_path));
    const fs::path manifest = args.count("--manifest") ? fs::path(args.at("--manifest"))
                                                       : engine.parent_path() / "manifest.json";
    if (!args.count("--manifest") && !fs::is_regular_file(manifest)) return {};
    ibit::json::Value doc;
    try {
        doc = ibit::json::parse(ibit::read_file(manifest.string()), manifest.string());
    } catch (const std::runtime_error& e) {
        throw ibit::BadInput(e.what());
    }
    const std::string rel = engine.lexically_relative(fs::weakly_canonical(manifest).parent_path()).generic_string();
    return ibit::engine_record(doc, rel, manifest.string());
}

// Compute capability of GPU 0, or {-1, -1} when it cannot be read (TensorRT's own check still applies).
std::pair<int, int> compute_capability() {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return {-1, -1};
    return {prop.major, prop.minor};
}

double ms_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// One image run: files -> batch -> copy in -> enqueueV3 -> copy out -> top-k, each stage timed on the host.
ibit::Tensor infer_images(Bound& b, const std::vector<std::string>& images, const ibit::Preprocessing& prep,
                          ibit::Tensor& logits, ibit::StageTimes& times, std::vector<ibit::TopK>* tops, int topk) {
    const auto start = std::chrono::steady_clock::now();
    ibit::Tensor batch = ibit::images_to_batch(images, prep, times);
    times.time("h2d", [&] {
        cuda_check(cudaMemcpyAsync(b.d_in, batch.data.data(), batch.data.size() * sizeof(float),
                                   cudaMemcpyHostToDevice, b.stream), "cudaMemcpyAsync (input)");
        cuda_check(cudaStreamSynchronize(b.stream), "cudaStreamSynchronize");
    });
    times.time("inference", [&] {
        if (!b.context.enqueueV3(b.stream)) throw std::runtime_error("enqueueV3 failed");
        cuda_check(cudaStreamSynchronize(b.stream), "cudaStreamSynchronize");
    });
    times.time("d2h", [&] {
        cuda_check(cudaMemcpyAsync(logits.data.data(), b.d_out, logits.data.size() * sizeof(float),
                                   cudaMemcpyDeviceToHost, b.stream), "cudaMemcpyAsync (output)");
        cuda_check(cudaStreamSynchronize(b.stream), "cudaStreamSynchronize");
    });
    std::vector<ibit::TopK> ranked = times.time("postprocess", [&] { return ibit::top_k(logits, topk); });
    times.add_end_to_end(ms_since(start));
    if (tops) *tops = std::move(ranked);
    return batch;
}

int run_images(Bound& b, const std::map<std::string, std::string>& args, const std::vector<std::string>& images,
               const ibit::Preprocessing& prep, ibit::Tensor& logits, int iters, int warmup, int topk) {
    ibit::StageTimes times;
    std::vector<ibit::TopK> tops;
    const ibit::Tensor batch = infer_images(b, images, prep, logits, times, &tops, topk);
    std::cout << "engine: " << args.at("--engine") << "\n";
    if (topk > 0) ibit::print_labels(images, tops, prep.classes);
    if (args.count("--out")) ibit::write_output(args.at("--out"), logits);
    if (args.count("--dump-input")) ibit::write_output(args.at("--dump-input"), batch);
    for (int i = 0; i < warmup; ++i) infer_images(b, images, prep, logits, times, nullptr, topk);
    times.clear();
    for (int i = 0; i < iters; ++i) infer_images(b, images, prep, logits, times, nullptr, topk);
    if (args.count("--stages-json")) {
        std::ostringstream about;
        about << "\"runner\": \"trt_runner\", \"backend\": \"tensorrt-cpp\", \"tensorrt_version\": \""
              << NV_TENSORRT_MAJOR << "." << NV_TENSORRT_MINOR << "." << NV_TENSORRT_PATCH
              << "\", \"engine\": " << ibit::json_string(args.at("--engine")) << ", \"batch\": " << images.size()
              << ", \"warmup\": " << warmup << ", \"repeats\": " << iters;
        ibit::write_stages_report(args.at("--stages-json"), about.str(), times);
    }
    return 0;
}

int run(int argc, char** argv) {
    std::vector<std::string> images;
    const auto args = ibit::parse_args(argc, argv,
                                       {"--engine", "--input", "--batch", "--out", "--iters", "--warmup", "--topk",
                                        "--json", "--manifest", "--dump-input", "--stages-json", "--lean-runtime"},
                                       {"--help", "-h"}, &images);
    if (args.count("--help") || args.count("-h")) {
        std::cout << kUsage;
        return 0;
    }
    if (!args.count("--engine")) throw std::invalid_argument("--engine is required");
    const std::string engine_path = args.at("--engine");
    ibit::check_image_arguments(args, images);
    const int batch = ibit::to_int(args, "--batch", 1, 1);
    const int iters = ibit::to_int(args, "--iters", args.count("--stages-json") ? 20 : 0, 0);
    const int warmup = ibit::to_int(args, "--warmup", iters ? 10 : 0, 0), topk = ibit::to_int(args, "--topk", 5, 0);

    Logger logger;
    const std::string plan = ibit::read_file(engine_path);
    const ibit::EngineRecord record = manifest_record(args, engine_path);
    const bool have_lean = args.count("--lean-runtime") > 0;
    if (have_lean && !(record.found && record.lean_excluded))
        throw std::invalid_argument("--lean-runtime goes with an engine the manifest records as built with "
                                    "--exclude-lean-runtime");
    const std::string installed = ibit::trt_version_string(getInferLibVersion());
    const auto cc = compute_capability();
    const std::string why = ibit::engine_compat_refusal(
        record, installed, std::filesystem::exists("/etc/nv_tegra_release"), cc.first, cc.second, have_lean, engine_path);
    if (!why.empty()) throw ibit::Unrunnable(why);
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    if (!runtime) throw std::runtime_error("createInferRuntime failed (no CUDA GPU or driver?)");
    std::unique_ptr<nvinfer1::IRuntime> lean;  // the lean runtime of an engine built without its own
    nvinfer1::IRuntime* deserializer = runtime.get();
    if (have_lean) {
        lean.reset(runtime->loadRuntime(args.at("--lean-runtime").c_str()));
        if (!lean) throw std::runtime_error("cannot load the lean runtime library " + args.at("--lean-runtime"));
        deserializer = lean.get();
    } else if (ibit::has_part(record.choice, "version")) {
        runtime->setEngineHostCodeAllowed(true);  // the plan carries its lean runtime; the manifest says so
    }
    std::unique_ptr<nvinfer1::ICudaEngine> engine(deserializer->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine)
        throw std::runtime_error(engine_path + ": cannot deserialize; engines only load on the GPU and TensorRT "
                                 "version that built them (rebuild with build_engine.sh)");
    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
    if (!context) throw std::runtime_error("createExecutionContext failed");

    std::string input_name, output_name;
    for (int i = 0; i < engine->getNbIOTensors(); ++i) {
        const char* name = engine->getIOTensorName(i);
        if (engine->getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
            throw std::runtime_error(std::string("tensor '") + name + "' is not float32; ibit-deploy engines keep "
                                     "float32 inputs and outputs");
        std::string& slot = engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? input_name : output_name;
        if (!slot.empty()) throw std::runtime_error("engine has more than one input or output; expected images -> logits");
        slot = name;
    }
    if (input_name.empty() || output_name.empty()) throw std::runtime_error("engine needs one input and one output");
    const nvinfer1::Dims engine_in = engine->getTensorShape(input_name.c_str());  // (-1, C, H, W)
    if (engine_in.nbDims != 4) throw std::runtime_error("input '" + input_name + "' is not NCHW");
    const std::vector<int64_t> chw = {engine_in.d[1], engine_in.d[2], engine_in.d[3]};
    const nvinfer1::Dims max_in =
        engine->getProfileShape(input_name.c_str(), 0, nvinfer1::OptProfileSelector::kMAX);

    ibit::Preprocessing prep;
    ibit::Tensor input;
    if (images.empty()) {
        input = ibit::load_input(args.count("--input") ? args.at("--input") : "", batch, chw);
    } else {
        prep = ibit::read_preprocessing(args.at("--manifest"));
        ibit::check_model_input(prep, chw, args.at("--manifest"));
        input.shape = {static_cast<int64_t>(images.size()), prep.channels, prep.height, prep.width};
        input.data.resize(static_cast<size_t>(ibit::numel(input.shape)));
    }
    if (input.shape[0] > max_in.d[0])
        throw std::runtime_error("batch " + std::to_string(input.shape[0]) + " exceeds the engine profile's max " +
                                 std::to_string(max_in.d[0]));
    nvinfer1::Dims in_dims{};
    in_dims.nbDims = 4;
    for (int i = 0; i < 4; ++i) in_dims.d[i] = input.shape[static_cast<size_t>(i)];
    if (!context->setInputShape(input_name.c_str(), in_dims))
        throw std::runtime_error("setInputShape " + ibit::shape_str(input.shape) + " rejected by the profile");
    const nvinfer1::Dims out_dims = context->getTensorShape(output_name.c_str());
    ibit::Tensor logits;
    for (int i = 0; i < out_dims.nbDims; ++i) logits.shape.push_back(out_dims.d[i]);
    logits.data.resize(static_cast<size_t>(volume(out_dims)));

    DeviceBuffer d_in(input.data.size() * sizeof(float)), d_out(logits.data.size() * sizeof(float));
    context->setTensorAddress(input_name.c_str(), d_in.ptr);
    context->setTensorAddress(output_name.c_str(), d_out.ptr);
    cudaStream_t stream;
    cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
    if (!images.empty()) {
        Bound bound{*context, stream, d_in.ptr, d_out.ptr};
        const int rc = run_images(bound, args, images, prep, logits, iters, warmup, topk);
        cudaStreamDestroy(stream);
        return rc;
    }
    cudaEvent_t events[4];
    for (auto& e : events) cuda_check(cudaEventCreate(&e), "cudaEventCreate");

    // One inference; with `timed`, events bracket copy-in, enqueueV3 and copy-out on the stream.
    auto infer = [&](bool timed) {
        if (timed) cuda_check(cudaEventRecord(events[0], stream), "cudaEventRecord");
        cuda_check(cudaMemcpyAsync(d_in.ptr, input.data.data(), input.data.size() * sizeof(float),
                                   cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (input)");
        if (timed) cuda_check(cudaEventRecord(events[1], stream), "cudaEventRecord");
        if (!context->enqueueV3(stream)) throw std::runtime_error("enqueueV3 failed");
        if (timed) cuda_check(cudaEventRecord(events[2], stream), "cudaEventRecord");
        cuda_check(cudaMemcpyAsync(logits.data.data(), d_out.ptr, logits.data.size() * sizeof(float),
                                   cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (output)");
        if (timed) cuda_check(cudaEventRecord(events[3], stream), "cudaEventRecord");
        cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    };

    infer(false);
    std::cout << "engine: " << engine_path << "\ninput: " << input_name << " " << ibit::shape_str(input.shape)
              << "\noutput: " << output_name << " " << ibit::shape_str(logits.shape) << "\n";
    if (topk > 0) ibit::print_topk(logits, topk);
    if (args.count("--out")) ibit::write_output(args.at("--out"), logits);

    std::vector<double> h2d, compute, d2h;
    for (int i = 0; i < warmup; ++i) infer(false);
    for (int i = 0; i < iters; ++i) {
        infer(true);
        float ms[3];
        for (int s = 0; s < 3; ++s) cuda_check(cudaEventElapsedTime(&ms[s], events[s], events[s + 1]), "cudaEventElapsedTime");
        h2d.push_back(ms[0]);
        compute.push_back(ms[1]);
        d2h.push_back(ms[2]);
    }
    for (auto& e : events) cudaEventDestroy(e);
    cudaStreamDestroy(stream);

    if (iters) {
        std::cout << "gpu_compute_ms (" << iters << " runs, batch " << input.shape[0] << "): "
                  << ibit::stats_json(compute) << "\nh2d_ms: " << ibit::stats_json(h2d)
                  << "\nd2h_ms: " << ibit::stats_json(d2h) << "\n";
    }
    if (args.count("--json")) {
        std::ofstream f(args.at("--json"));
        f << "{\"backend\": \"tensorrt-cpp\", \"tensorrt_version\": \"" << NV_TENSORRT_MAJOR << "." << NV_TENSORRT_MINOR
          << "." << NV_TENSORRT_PATCH << "\", \"engine\": " << ibit::json_string(engine_path)
          << ", \"batch\": " << input.shape[0] << ", \"warmup\": " << warmup << ", \"iterations\": " << iters
          << ", \"compute_ms\": " << ibit::stats_json(compute) << ", \"h2d_ms\": " << ibit::stats_json(h2d)
          << ", \"d2h_ms\": " << ibit::stats_json(d2h) << ", \"compute_times_ms\": " << ibit::list_json(compute)
          << "}\n";
        if (!f) throw std::runtime_error("failed writing " + args.at("--json"));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return ibit::guarded_main("trt_runner", kUsage, run, argc, argv); }
