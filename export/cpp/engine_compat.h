// Which TensorRT may run an engine: the rule of ibit_deploy/devicekit/engine_compat.py (`refusal`), for trt_runner.
// Needs no TensorRT header, so tests/export/test_cpp_engine_compat.py compiles it alone and checks it against the
// Python rule on the same cases.
//
// The bundle's manifest.json records, in the engine's artifact entry, the TensorRT version that built it
// ("tensorrt") and "engine_compat": {"choice": "none"|"version"|"hardware"|"version+hardware", "lean_runtime":
// "embedded"|"excluded"|null, ...}; no "engine_compat" means "none" (engines recorded before the option existed).
//   - not version-compatible: only the TensorRT with the same major.minor.patch runs it;
//   - version-compatible: the building TensorRT or a later one; without its lean runtime ("excluded"), also the
//     building TensorRT's lean runtime library (--lean-runtime);
//   - hardware-compatible (Ampere+): not on a Jetson, and on a GPU of compute capability >= 8.0.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "json_lite.h"
#include "runner_common.h"

namespace ibit {

// What the manifest records about one engine (found: the manifest lists it).
struct EngineRecord {
    bool found = false;
    std::string built_with;  // empty: not recorded (the rule then leaves it to TensorRT)
    std::string choice = "none";
    bool lean_excluded = false;
};

// "10.3.0.30" -> {10, 3, 0}; "10.3" -> {10, 3}; BadInput naming `where` for anything else.
inline std::vector<int> parse_trt_version(const std::string& text, const std::string& where) {
    std::vector<int> parts;
    size_t pos = 0;
    while (parts.size() < 3 && pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
        int value = 0;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9' && value < 100000) value = value * 10 + (text[pos++] - '0');
        parts.push_back(value);
        if (pos < text.size() && text[pos] == '.') ++pos;
        else break;
    }
    if (parts.size() < 2)
        throw BadInput(where + ": cannot parse TensorRT version '" + text + "' (expected MAJOR.MINOR[.PATCH[.BUILD]])");
    return parts;
}

// getInferLibVersion()'s number ((MAJOR * 100 + MINOR) * 100 + PATCH, NvInferRuntimeBase.h) as "MAJOR.MINOR.PATCH".
inline std::string trt_version_string(int version) {
    return std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
           std::to_string(version % 100);
}

inline bool has_part(const std::string& choice, const std::string& part) {
    return choice == part || choice.rfind(part + "+", 0) == 0 || (choice.size() > part.size() &&
           choice.compare(choice.size() - part.size() - 1, std::string::npos, "+" + part) == 0);
}

// The record of the artifact of kind "engine" whose path is `engine_rel` (the engine's path relative to the
// manifest's folder, '/'-separated); BadInput for a malformed record.
inline EngineRecord engine_record(const json::Value& manifest, const std::string& engine_rel, const std::string& where) {
    EngineRecord r;
    const json::Value* arts = manifest.get("artifacts");
    if (!arts || arts->kind != json::Value::Kind::Array) return r;
    for (const auto& art : arts->items) {
        const json::Value* path = art.get("path");
        const json::Value* kind = art.get("kind");
        if (!path || path->kind != json::Value::Kind::String || path->text != engine_rel || !kind ||
            kind->text != "engine")
            continue;
        r.found = true;
        const json::Value* built = art.get("tensorrt");
        if (built && built->kind == json::Value::Kind::String) r.built_with = built->text;
        const json::Value* compat = art.get("engine_compat");
        if (compat && compat->kind != json::Value::Kind::Null) {
            const json::Value* choice = compat->get("choice");
            const json::Value* lean = compat->get("lean_runtime");
            if (!choice || choice->kind != json::Value::Kind::String ||
                (choice->text != "none" && choice->text != "version" && choice->text != "hardware" &&
                 choice->text != "version+hardware"))
                throw BadInput(where + ": " + engine_rel + ": engine_compat.choice must be none, version, hardware or "
                               "version+hardware");
            r.choice = choice->text;
            r.lean_excluded = lean && lean->kind == json::Value::Kind::String && lean->text == "excluded";
        }
        return r;
    }
    return r;
}

// Why TensorRT `installed` must not run `engine` (naming both versions); empty when it may. cc_major < 0: the
// compute capability is unknown.
inline std::string engine_compat_refusal(const EngineRecord& r, const std::string& installed, bool jetson,
                                         int cc_major, int cc_minor, bool have_lean_runtime, const std::string& engine) {
    if (r.built_with.empty()) return "";
    const std::vector<int> have = parse_trt_version(installed, "installed TensorRT");
    const std::vector<int> made = parse_trt_version(r.built_with, engine);
    if (has_part(r.choice, "version")) {
        std::vector<int> h = have, m = made;  // compare major.minor.patch, a missing part as 0
        h.resize(3, 0);
        m.resize(3, 0);
        if (h < m)
            return engine + " is version-compatible and was built with TensorRT " + r.built_with +
                   "; the installed TensorRT " + installed + " is older, and such engines run only on the TensorRT "
                   "that built them or a later one: rebuild it here (build_engine.py) or install TensorRT >= " +
                   r.built_with;
        if (r.lean_excluded && !have_lean_runtime)
            return engine + " was built with TensorRT " + r.built_with + " without its lean runtime "
                   "(--exclude-lean-runtime); TensorRT " + installed + " runs it only through the lean runtime "
                   "library of TensorRT " + r.built_with + " (libnvinfer_lean.so): pass its path (--lean-runtime)";
    } else {
        const size_t n = std::min<size_t>(3, std::min(have.size(), made.size()));
        if (!std::equal(have.begin(), have.begin() + static_cast<long>(n), made.begin()))
            return engine + " was built with TensorRT " + r.built_with + "; the installed TensorRT is " + installed +
                   ". An engine built without --engine-compat version runs only on the TensorRT version that built "
                   "it: rebuild it here (build_engine.py), or build it with --engine-compat version to survive "
                   "upgrades";
    }
    if (has_part(r.choice, "hardware")) {
        if (jetson)
            return engine + " is hardware-compatible (Ampere+), built with TensorRT " + r.built_with + "; TensorRT " +
                   installed + " on a Jetson does not run hardware-compatible engines (JetPack does not support "
                   "them): rebuild it on this Jetson with --engine-compat none or version";
        if (cc_major >= 0 && cc_major < 8)
            return engine + " is hardware-compatible (Ampere+, built with TensorRT " + r.built_with + "); this GPU has "
                   "compute capability " + std::to_string(cc_major) + "." + std::to_string(cc_minor) +
                   " (< 8.0), so TensorRT " + installed + " cannot run it here";
    }
    return "";
}

}  // namespace ibit
