"""The per-version usage report from conformance results (no bindings needed)."""

from __future__ import annotations

from ibit_deploy.conformance.report import render_markdown, usage_report


def _rep(version, uses, findings=()):
    return {"tensorrt": version, "uses": uses, "findings": list(findings), "static_scan": [],
            "targets": [{"target": "export.build_engine", "status": "raised" if findings else "ok"}]}


def test_names_are_merged_per_version_and_findings_listed():
    finding = {"kind": "missing", "name": "BuilderFlag.FP16", "site": "ibit_deploy/x.py:3", "detail": "gone"}
    summary = usage_report({"10.3": _rep("10.3.0", {"BuilderFlag.FP16": ["ibit_deploy/x.py:3", "/tmp/t.py:1"]}),
                            "11.4": _rep("11.4.0.106", {"Builder": ["ibit_deploy/x.py:1"]}, [finding])},
                           skipped={"12.0": "unknown"})
    assert summary["names"]["BuilderFlag.FP16"] == {"used_on": ["10.3"], "sites": ["ibit_deploy/x.py:3"]}
    text = render_markdown(summary)
    assert "| `BuilderFlag.FP16` | yes | - |" in text and "| export.build_engine | ok | raised |" in text
    assert "missing `BuilderFlag.FP16` at ibit_deploy/x.py:3" in text and "12.0: **skipped**" in text
