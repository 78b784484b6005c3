"""The report schema is a contract: changing its keys without bumping SCHEMA_VERSION must fail here."""

from __future__ import annotations

import copy

import pytest

from ibit_deploy.bench.report import SCHEMA, SCHEMA_VERSION, check_report, markdown_table, schema_fingerprint

# schema_version -> fingerprint of SCHEMA. When you change the report's keys: bump SCHEMA_VERSION in
# ibit_deploy/bench/report.py, update its docstring, and add the new pair here (never edit an existing pair).
PINNED = {1: "c342903248f6e553", 2: "9dad5aba9746cefa", 3: "5763992b1df0cd66"}


def test_schema_keys_match_their_version():
    assert SCHEMA_VERSION in PINNED, f"schema_version {SCHEMA_VERSION} is not pinned in this test"
    assert schema_fingerprint() == PINNED[SCHEMA_VERSION], (
        "the report schema changed without a new schema_version: bump SCHEMA_VERSION in ibit_deploy/bench/report.py "
        f"and pin {{{SCHEMA_VERSION + 1}: '{schema_fingerprint()}'}} here")


def _minimal_report() -> dict:
    run = {"name": "ort-cpu:fp32", "backend": "ort-cpu", "precision": "fp32", "artifact": "model.onnx",
           "status": "ok", "reason": None, "runner": {"backend": "ort-cpu"},
           "accuracy": {k: 0.5 for k in SCHEMA["accuracy"]} | {"per_class": {}},
           "latency": [{k: 1.0 for k in SCHEMA["latency_ok"]} | {"batch": 1, "status": "ok", "device": None,
                                                                  "power": None},
                       {"batch": 128, "status": "skipped", "reason": "outside range"}],
           "speedup_vs_reference": {"1": 2.0}, "trtexec": None}
    skipped = {k: None for k in SCHEMA["run"]} | {"name": "ort-cuda:fp32", "backend": "ort-cuda", "precision": "fp32",
                                                  "artifact": "model.onnx", "status": "skipped",
                                                  "reason": "no CUDA here", "latency": []}
    report = {k: None for k in SCHEMA["report"]}
    report.update(schema_version=SCHEMA_VERSION, tool="ibit-bench", status="complete", complete=True,
                  created="2026-11-21T21:00:00Z", runs=[run, skipped], machine={"cpu": "x"},
                  options={"batches": [1, 128]})
    for section in ("bundle", "data", "reference", "jetson", "files", "manifest_update"):
        report[section] = {k: None for k in SCHEMA[section]}
    report["end_to_end"] = None
    report["bundle"]["model"] = "tiny"
    report["reference"]["name"] = "torch-ref"
    return report


def test_check_report_names_missing_and_unexpected_keys():
    report = _minimal_report()
    check_report(report)
    broken = copy.deepcopy(report)
    broken["runs"][0]["accuracy"]["top3"] = 0.1
    with pytest.raises(ValueError, match=r"accuracy: missing keys \[\], unexpected keys \['top3'\]"):
        check_report(broken)
    broken = copy.deepcopy(report)
    del broken["schema_version"]
    with pytest.raises(ValueError, match="top level: missing keys"):
        check_report(broken)


def test_markdown_table_has_one_row_per_run_and_reasons():
    text = markdown_table(_minimal_report())
    assert "| model.onnx | ort-cpu | fp32 | 50.00% | 50.00% |" in text
    assert "| model.onnx | ort-cuda | fp32 | skipped |" in text
    assert "ort-cuda:fp32** skipped: no CUDA here" in text and "batch 128 skipped: outside range" in text
    assert "2.00× @1" in text and "Power" not in text and "trtexec" not in text


def test_markdown_adds_power_and_trtexec_sections_when_measured():
    report = _minimal_report()
    run = report["runs"][0]
    run["latency"][0]["power"] = {"mean_power_mW": 5060.0, "energy_per_image_mJ": 12.5, "total_source": "VDD_IN"}
    run["trtexec"] = [{"batch": 1, "status": "ok", "summary": {"throughput_qps": 2000.5, "metrics": {
        "gpu_compute": {"p50_ms": 0.46}, "latency": {"p50_ms": 0.48}}}},
                      {"batch": 64, "status": "error", "reason": "trtexec exited with 1"}]
    report["jetson"]["power_mode"] = {"name": "MAXN", "id": 0}
    text = markdown_table(report)
    assert "power mode MAXN" in text and "| ort-cpu:fp32 | 1 | 5060 | 12.5 | VDD_IN |" in text
    assert "| ort-cpu:fp32 | 1 | 0.46 | 0.48 | 2000.5 |" in text and "error: trtexec exited with 1" in text


def _end_to_end_section() -> dict:
    from ibit_deploy.bench.end_to_end import STAGES, summarize

    records = [{"batch": 1, "stages_ms": {s: None if s in ("h2d", "d2h") else 1.0 for s in STAGES},
                "end_to_end_ms": 5.5} for _ in range(3)]
    row = {"runtime": "cpp", "backend": "ort-cpu", "precision": "fp32", "artifact": "model.onnx", "status": "ok",
           "reason": None, "batches": [summarize(records, {"h2d": "host memory", "d2h": "host memory"}),
                                       {"batch": 64, "status": "skipped", "reason": "outside range"}]}
    return {"images": {"dir": "/d", "count": 3, "formats": {"png": 3}, "sizes": {"28x28": 3}},
            "stages": list(STAGES), "batches": [1, 64], "runners": {"cpp:ort-cpu:fp32": row}}


def test_end_to_end_section_is_checked_and_shown():
    """A runner of another runtime (here a C++ one) is one more row: same keys, same table, n/a where absent."""
    report = _minimal_report()
    report["end_to_end"] = _end_to_end_section()
    check_report(report)
    text = markdown_table(report)
    assert "| cpp:ort-cpu:fp32 | 1 | 1 / 1 | 1 / 1 | 1 / 1 | n/a | 1 / 1 | n/a | 1 / 1 | 5.5 / 5.5 | 181.8 | 82% |" \
        in text
    assert "- n/a: host memory" in text and "cpp:ort-cpu:fp32 batch 64 skipped: outside range" in text
    broken = copy.deepcopy(report)
    del broken["end_to_end"]["runners"]["cpp:ort-cpu:fp32"]["batches"][0]["stages"]["d2h"]
    with pytest.raises(ValueError, match="stages .* expected"):
        check_report(broken)
    broken = copy.deepcopy(report)
    broken["end_to_end"]["runners"]["cpp:ort-cpu:fp32"]["batches"][0]["stages"]["read"]["p90_ms"] = 1.0
    with pytest.raises(ValueError, match=r"stage 'read': missing keys \[\], unexpected keys \['p90_ms'\]"):
        check_report(broken)
