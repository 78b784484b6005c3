// trt_runner: run a TensorRT engine (engine.plan, built on this device by the bundle's build_engine.sh).
//
//   trt_runner --engine engine.plan [--input x.npy | --input x.f32] [--batch N] [--out logits.npy]
//              [--iters N] [--warmup N] [--topk K] [--json report.json]
//
// createInferRuntime -> deserializeCudaEngine -> createExecutionContext -> setInputShape / setTensorAddress for
// every I/O tensor -> enqueueV3. Works with TensorRT 10.x and 11.x. With --iters, CUDA events time the
// host-to-device copy, the GPU compute (enqueueV3 alone) and the device-to-host copy of each run separately,
// reporting p50/p90/p99 of each, as trtexec separates them.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <memory>

#include "runner_common.h"

namespace {

const char* kUsage =
    "usage: trt_runner --engine engine.plan [--input x.npy|x.f32] [--batch N] [--out logits.npy] [--iters N]\n"
    "                  [--warmup N] [--topk K] [--json report.json]\n";

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

int run(int argc, char** argv) {
    const auto args = ibit::parse_args(
        argc, argv, {"--engine", "--input", "--batch", "--out", "--iters", "--warmup", "--topk", "--json"},
        {"--help", "-h"});
    if (args.count("--help") || args.count("-h")) {
        std::cout << kUsage;
        return 0;
    }
    if (!args.count("--engine")) throw std::invalid_argument("--engine is required");
    const std::string engine_path = args.at("--engine");
    const int batch = ibit::to_int(args, "--batch", 1, 1), iters = ibit::to_int(args, "--iters", 0, 0);
    const int warmup = ibit::to_int(args, "--warmup", iters ? 10 : 0, 0), topk = ibit::to_int(args, "--topk", 5, 0);

    Logger logger;
    const std::string plan = ibit::read_file(engine_path);
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    if (!runtime) throw std::runtime_error("createInferRuntime failed (no CUDA GPU or driver?)");
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(plan.data(), plan.size()));
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

    ibit::Tensor input = ibit::load_input(args.count("--input") ? args.at("--input") : "", batch, chw);
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
