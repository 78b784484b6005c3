// What both runners share: float32 .npy / raw file I/O, top-k printing, latency percentiles, a JSON report.
// Header-only and dependency-free so each runner stays one translation unit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ibit {

// Bad input (a file that is not what it should be, a manifest field out of range): exit 2 with this message.
struct BadInput : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> data;
};

inline int64_t numel(const std::vector<int64_t>& shape) {
    return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

inline std::string shape_str(const std::vector<int64_t>& shape) {
    std::ostringstream s;
    for (size_t i = 0; i < shape.size(); ++i) s << (i ? "x" : "") << shape[i];
    return s.str();
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// A C-order little-endian float32 .npy (what numpy.save writes for np.float32 arrays).
inline Tensor read_npy(const std::string& path) {
    const std::string bytes = read_file(path);
    if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
        throw std::runtime_error(path + ": not a .npy file (bad magic)");
    const int major = static_cast<unsigned char>(bytes[6]);
    size_t header_len = 0, offset = 0;
    if (major == 1) {
        header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
        offset = 10;
    } else {
        if (bytes.size() < 12) throw std::runtime_error(path + ": truncated .npy header");
        for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + i]);
        offset = 12;
    }
    if (offset + header_len > bytes.size()) throw std::runtime_error(path + ": truncated .npy header");
    const std::string header = bytes.substr(offset, header_len);
    if (header.find("'descr': '<f4'") == std::string::npos)
        throw std::runtime_error(path + ": expected float32 little-endian data ('<f4'), header is " + header);
    if (header.find("'fortran_order': False") == std::string::npos)
        throw std::runtime_error(path + ": expected C-order data (fortran_order False)");
    const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
    if (open == std::string::npos || close == std::string::npos)
        throw std::runtime_error(path + ": no shape in .npy header");
    Tensor t;
    std::stringstream dims(header.substr(open + 1, close - open - 1));
    for (std::string item; std::getline(dims, item, ',');)
        if (item.find_first_not_of(" ") != std::string::npos) t.shape.push_back(std::stoll(item));
    const size_t count = static_cast<size_t>(numel(t.shape));
    if (bytes.size() - offset - header_len != count * sizeof(float))
        throw std::runtime_error(path + ": data size does not match shape " + shape_str(t.shape));
    t.data.resize(count);
    std::memcpy(t.data.data(), bytes.data() + offset + header_len, count * sizeof(float));
    return t;
}

inline void write_npy(const std::string& path, const Tensor& t) {
    std::ostringstream dict;
    dict << "{'descr': '<f4', 'fortran_order': False, 'shape': (";
    for (size_t i = 0; i < t.shape.size(); ++i) dict << t.shape[i] << (t.shape.size() == 1 || i + 1 < t.shape.size() ? "," : "");
    dict << "), }";
    std::string header = dict.str();
    header.append(64 - (10 + header.size() + 1) % 64, ' ');  // numpy pads magic + length + header to 64 bytes
    header.push_back('\n');
    std::ofstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot write " + path);
    const uint16_t len = static_cast<uint16_t>(header.size());
    f.write("\x93NUMPY\x01\x00", 8);
    f.put(static_cast<char>(len & 0xff)).put(static_cast<char>(len >> 8));
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size() * sizeof(float)));
    if (!f) throw std::runtime_error("failed writing " + path);
}

// Input batch: a .npy, a raw float32 file (batch inferred from its size and C*H*W), or seeded random normals.
inline Tensor load_input(const std::string& path, int64_t batch, const std::vector<int64_t>& chw) {
    Tensor t;
    if (path.empty()) {
        t.shape = {batch, chw[0], chw[1], chw[2]};
        t.data.resize(static_cast<size_t>(numel(t.shape)));
        std::mt19937 rng(0);
        std::normal_distribution<float> normal(0.f, 1.f);
        for (auto& v : t.data) v = normal(rng);
        return t;
    }
    if (ends_with(path, ".npy")) {
        t = read_npy(path);
    } else {
        const std::string bytes = read_file(path);
        const int64_t per_sample = numel(chw) * static_cast<int64_t>(sizeof(float));
        if (bytes.empty() || bytes.size() % per_sample != 0)
            throw std::runtime_error(path + ": raw float32 size " + std::to_string(bytes.size()) +
                                     " is not a multiple of one " + shape_str(chw) + " sample");
        t.shape = {static_cast<int64_t>(bytes.size()) / per_sample, chw[0], chw[1], chw[2]};
        t.data.resize(bytes.size() / sizeof(float));
        std::memcpy(t.data.data(), bytes.data(), bytes.size());
    }
    if (t.shape.size() != 4 || t.shape[1] != chw[0] || t.shape[2] != chw[1] || t.shape[3] != chw[2])
        throw std::runtime_error(path + ": shape " + shape_str(t.shape) + " does not match the model's N x " +
                                 shape_str(chw));
    return t;
}

inline void write_output(const std::string& path, const Tensor& t) {
    if (ends_with(path, ".npy")) {
        write_npy(path, t);
        return;
    }
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size() * sizeof(float)));
    if (!f) throw std::runtime_error("failed writing " + path);
}

inline void print_topk(const Tensor& logits, int k, int max_rows = 8) {
    const int64_t rows = logits.shape[0], classes = logits.shape.back();
    for (int64_t r = 0; r < std::min<int64_t>(rows, max_rows); ++r) {
        const float* row = logits.data.data() + r * classes;
        std::vector<int64_t> idx(static_cast<size_t>(classes));
        std::iota(idx.begin(), idx.end(), 0);
        const int64_t kk = std::min<int64_t>(k, classes);
        std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](int64_t a, int64_t b) { return row[a] > row[b]; });
        std::cout << "sample " << r << ":";
        for (int64_t i = 0; i < kk; ++i) std::cout << " " << idx[i] << " (" << std::setprecision(5) << row[idx[i]] << ")";
        std::cout << "\n";
    }
    if (rows > max_rows) std::cout << "... " << rows - max_rows << " more samples\n";
}

// Linear interpolation between closest ranks, as numpy.percentile does by default.
inline double percentile(std::vector<double> v, double p) {
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos)), hi = static_cast<size_t>(std::ceil(pos));
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

inline std::string stats_json(const std::vector<double>& ms) {
    std::ostringstream s;
    s << std::setprecision(6) << "{\"p50\": " << percentile(ms, 50) << ", \"p90\": " << percentile(ms, 90)
      << ", \"p99\": " << percentile(ms, 99) << ", \"mean\": "
      << (ms.empty() ? NAN : std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size()))
      << ", \"min\": " << (ms.empty() ? NAN : *std::min_element(ms.begin(), ms.end()))
      << ", \"max\": " << (ms.empty() ? NAN : *std::max_element(ms.begin(), ms.end())) << "}";
    return s.str();
}

inline std::string list_json(const std::vector<double>& ms) {
    std::ostringstream s;
    s << std::setprecision(6) << "[";
    for (size_t i = 0; i < ms.size(); ++i) s << (i ? ", " : "") << ms[i];
    s << "]";
    return s.str();
}

inline std::string json_string(const std::string& v) {
    std::string out = "\"";
    for (char c : v) out += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
    return out + "\"";
}

// "--key value" arguments; flags listed in `flags` take no value. Unknown keys are an error. Arguments that do not
// start with "-" are collected into `positional` when it is given (else they are an error too).
inline std::map<std::string, std::string> parse_args(int argc, char** argv, const std::vector<std::string>& keys,
                                                     const std::vector<std::string>& flags,
                                                     std::vector<std::string>* positional = nullptr) {
    std::map<std::string, std::string> args;
    for (int i = 1; i < argc; ++i) {
        const std::string key = argv[i];
        if (positional && !key.empty() && key[0] != '-') {
            positional->push_back(key);
        } else if (std::find(flags.begin(), flags.end(), key) != flags.end()) {
            args[key] = "1";
        } else if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
            if (i + 1 >= argc) throw std::invalid_argument(key + " needs a value");
            args[key] = argv[++i];
        } else {
            throw std::invalid_argument("unknown argument '" + key + "'");
        }
    }
    return args;
}

inline int to_int(const std::map<std::string, std::string>& args, const std::string& key, int fallback, int minimum) {
    auto it = args.find(key);
    if (it == args.end()) return fallback;
    size_t used = 0;
    int value = 0;
    try {
        value = std::stoi(it->second, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != it->second.size() || value < minimum)
        throw std::invalid_argument(key + " must be an integer >= " + std::to_string(minimum) + ", got '" +
                                    it->second + "'");
    return value;
}

// What cannot run here (an engine the installed TensorRT cannot run): exit 3, as the Python side's "requirement
// unmet".
struct Unrunnable : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The runners' main(): runs `run` and maps failures to exit codes, 2 for bad arguments (printed with the usage) and
// bad input files (BadInput), 3 for what cannot run here (Unrunnable), 1 for everything else, so scripts can tell a
// wrong invocation from a failed inference.
inline int guarded_main(const char* tool, const char* usage, int (*run)(int, char**), int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::cerr << tool << ": " << e.what() << "\n" << usage;
        return 2;
    } catch (const BadInput& e) {
        std::cerr << tool << ": " << e.what() << "\n";
        return 2;
    } catch (const Unrunnable& e) {
        std::cerr << tool << ": " << e.what() << "\n";
        return 3;
    } catch (const std::exception& e) {
        std::cerr << tool << ": " << e.what() << "\n";
        return 1;
    }
}

}  // namespace ibit
