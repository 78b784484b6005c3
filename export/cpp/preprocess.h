// The bundle's preprocessing, exactly as the Python side applies it (ibit_deploy.data.transforms.eval_transform via
// Predictor.preprocess): pixels in the manifest's channel order, resized to input.image_size with torchvision's
// antialiased bilinear resize of uint8 images, scaled to [0, 1], normalised with input.mean / input.std, NCHW.
//
// The resize reproduces what torch does for uint8 images (torch.nn.functional.interpolate(mode="bilinear",
// antialias=True, align_corners=False), which torchvision's Resize calls without a float round trip on x86 with
// AVX2 and on aarch64): separable, the horizontal pass first, then the vertical one, each rounding to uint8;
// each output pixel is a triangle-filter average over the input pixels its footprint covers (support = max(1,
// scale) input pixels each side), the filter weights normalised to sum 1 and then quantised to int16 with the most
// fractional bits that keep the largest weight below 2^15. A dimension that keeps its size is not resampled.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "json_lite.h"
#include "runner_common.h"

namespace ibit {

// What manifest.json's `input` block and `classes` say about turning pixels into the model's input.
struct Preprocessing {
    int channels = 0, height = 0, width = 0;
    std::vector<float> mean, std;
    std::string channel_order;  // "L", "RGB" or "BGR"
    std::vector<std::string> classes;
};

namespace detail {

inline int manifest_int(const json::Value* v, const std::string& where, const std::string& field) {
    if (!v || v->kind != json::Value::Kind::Number || v->number != std::floor(v->number) || v->number < 1 ||
        v->number > 1e6)
        throw BadInput(where + ": " + field + " should be a positive integer");
    return static_cast<int>(v->number);
}

inline std::vector<float> manifest_floats(const json::Value* v, size_t count, const std::string& where,
                                          const std::string& field) {
    if (!v || v->kind != json::Value::Kind::Array || v->items.size() != count)
        throw BadInput(where + ": " + field + " should be a list of " + std::to_string(count) + " numbers");
    std::vector<float> out;
    for (const auto& item : v->items) {
        if (item.kind != json::Value::Kind::Number) throw BadInput(where + ": " + field + " holds a non-number");
        out.push_back(static_cast<float>(item.number));
    }
    return out;
}

}  // namespace detail

// The preprocessing `path` (a bundle's manifest.json) records; BadInput naming the field that is missing or wrong.
inline Preprocessing read_preprocessing(const std::string& path) {
    json::Value doc;
    try {
        doc = json::parse(read_file(path), path);
    } catch (const std::runtime_error& e) {  // missing, unreadable or not JSON: the caller's input is wrong
        throw BadInput(e.what());
    }
    const json::Value* input = doc.get("input");
    if (!input || input->kind != json::Value::Kind::Object) throw BadInput(path + ": no 'input' object");
    const json::Value* shape = input->get("shape");
    if (!shape || shape->kind != json::Value::Kind::Array || shape->items.size() != 4)
        throw BadInput(path + ": input.shape should be [batch, C, H, W]");
    Preprocessing p;
    p.channels = detail::manifest_int(&shape->items[1], path, "input.shape[1] (channels)");
    if (p.channels != 1 && p.channels != 3)
        throw BadInput(path + ": input.shape has " + std::to_string(p.channels) + " channels; expected 1 or 3");
    const json::Value* size = input->get("image_size");
    if (!size || size->kind != json::Value::Kind::Array || size->items.size() != 2)
        throw BadInput(path + ": input.image_size should be [H, W]");
    p.height = detail::manifest_int(&size->items[0], path, "input.image_size[0]");
    p.width = detail::manifest_int(&size->items[1], path, "input.image_size[1]");
    if (detail::manifest_int(&shape->items[2], path, "input.shape[2]") != p.height ||
        detail::manifest_int(&shape->items[3], path, "input.shape[3]") != p.width)
        throw BadInput(path + ": input.image_size does not match input.shape's H, W");
    p.mean = detail::manifest_floats(input->get("mean"), static_cast<size_t>(p.channels), path, "input.mean");
    p.std = detail::manifest_floats(input->get("std"), static_cast<size_t>(p.channels), path, "input.std");
    for (float s : p.std)
        if (!(s > 0.f)) throw BadInput(path + ": input.std should be positive, got " + std::to_string(s));
    const json::Value* order = input->get("channel_order");
    if (!order || order->kind == json::Value::Kind::Null || (order->kind == json::Value::Kind::String && order->text.empty()))
        p.channel_order = p.channels == 1 ? "L" : "RGB";  // what Predictor assumes when the manifest records none
    else if (order->kind == json::Value::Kind::String && (order->text == "L" || order->text == "RGB" || order->text == "BGR"))
        p.channel_order = order->text;
    else
        throw BadInput(path + ": input.channel_order should be \"L\", \"RGB\" or \"BGR\"");
    if ((p.channel_order == "L") != (p.channels == 1))
        throw BadInput(path + ": input.channel_order " + p.channel_order + " does not match " +
                       std::to_string(p.channels) + " channel(s)");
    if (const json::Value* classes = doc.get("classes")) {
        if (classes->kind != json::Value::Kind::Array) throw BadInput(path + ": classes should be a list of names");
        for (const auto& c : classes->items) {
            if (c.kind != json::Value::Kind::String) throw BadInput(path + ": classes holds a non-string");
            p.classes.push_back(c.text);
        }
    }
    return p;
}

// One pass's filter: for each output index, the first input index and the int16 weights, with `precision` bits.
struct ResampleWeights {
    std::vector<int64_t> first;
    std::vector<std::vector<int16_t>> weights;
    unsigned precision = 0;
};

inline ResampleWeights resample_weights(int64_t in_size, int64_t out_size) {
    const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
    const double support = scale >= 1.0 ? scale : 1.0;  // bilinear: 1 input pixel each side, widened when shrinking
    const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    std::vector<std::vector<double>> real(static_cast<size_t>(out_size));
    ResampleWeights r;
    double wt_max = 0.0;
    for (int64_t i = 0; i < out_size; ++i) {
        const double center = scale * (static_cast<double>(i) + 0.5);
        const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
        const int64_t xsize = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size) - xmin;
        std::vector<double>& w = real[static_cast<size_t>(i)];
        double total = 0.0;
        for (int64_t j = 0; j < xsize; ++j) {
            const double x = std::fabs((static_cast<double>(j + xmin) - center + 0.5) * invscale);
            w.push_back(x < 1.0 ? 1.0 - x : 0.0);
            total += w.back();
        }
        if (total != 0.0)
            for (double& v : w) wt_max = std::max(wt_max, v /= total);
        r.first.push_back(xmin);
    }
    while (r.precision < 22 && static_cast<int>(0.5 + wt_max * static_cast<double>(1 << (r.precision + 1))) < (1 << 15))
        ++r.precision;
    for (const auto& w : real) {
        std::vector<int16_t> q;
        for (double v : w) {
            const double scaled = v * static_cast<double>(1 << r.precision);
            q.push_back(static_cast<int16_t>(scaled < 0 ? static_cast<int>(-0.5 + scaled) : static_cast<int>(0.5 + scaled)));
        }
        r.weights.push_back(std::move(q));
    }
    return r;
}

// Resample an interleaved uint8 image along one axis (`horizontal`: width, else height) to `out_size`.
inline std::vector<uint8_t> resample_pass(const std::vector<uint8_t>& src, int64_t h, int64_t w, int64_t c,
                                          bool horizontal, int64_t out_size) {
    const ResampleWeights r = resample_weights(horizontal ? w : h, out_size);
    const int64_t oh = horizontal ? h : out_size, ow = horizontal ? out_size : w;
    const int64_t step = horizontal ? c : w * c;  // distance between neighbours along the resampled axis
    std::vector<uint8_t> out(static_cast<size_t>(oh * ow * c));
    const int32_t half = 1 << (r.precision - 1);
    for (int64_t y = 0; y < oh; ++y) {
        for (int64_t x = 0; x < ow; ++x) {
            const int64_t i = horizontal ? x : y;
            const auto& wt = r.weights[static_cast<size_t>(i)];
            const uint8_t* base = src.data() + (horizontal ? (y * w + r.first[i]) * c : (r.first[i] * w + x) * c);
            for (int64_t k = 0; k < c; ++k) {
                int32_t acc = half;
                for (size_t j = 0; j < wt.size(); ++j) acc += static_cast<int32_t>(base[j * step + k]) * wt[j];
                out[static_cast<size_t>((y * ow + x) * c + k)] = static_cast<uint8_t>(std::clamp(acc >> r.precision, 0, 255));
            }
        }
    }
    return out;
}

// torchvision's Resize(antialias=True) of an interleaved uint8 (h, w, c) image: width first, then height.
inline std::vector<uint8_t> resize_bilinear_aa(std::vector<uint8_t> pixels, int64_t h, int64_t w, int64_t c,
                                               int64_t out_h, int64_t out_w) {
    if (w != out_w) pixels = resample_pass(pixels, h, w, c, true, out_w);
    if (h != out_h) pixels = resample_pass(pixels, h, out_w, c, false, out_h);
    return pixels;
}

// (p / 255 - mean[c]) / std[c] in float32, HWC uint8 at the model's size -> CHW floats at `out`.
inline void normalise_into(const std::vector<uint8_t>& pixels, const Preprocessing& p, float* out) {
    const int64_t plane = static_cast<int64_t>(p.height) * p.width;
    for (int k = 0; k < p.channels; ++k) {
        const float mean = p.mean[static_cast<size_t>(k)], std = p.std[static_cast<size_t>(k)];
        for (int64_t i = 0; i < plane; ++i)
            out[k * plane + i] = (static_cast<float>(pixels[static_cast<size_t>(i * p.channels + k)]) / 255.0f - mean) / std;
    }
}

}  // namespace ibit
