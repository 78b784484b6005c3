"""Per-version report of the TensorRT names the project uses (from conformance runs) as JSON and Markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def usage_report(reports: Mapping[str, Mapping[str, Any]], skipped: Mapping[str, str] | None = None
                 ) -> dict[str, Any]:
    """Combine ``run_conformance`` reports (keyed by version) into one summary.

    ``names``: every TensorRT name used, with the versions whose code paths used it and the project sites.
    ``versions``: per version the bindings' exact version, each code path's status, findings, static scan misses.
    """
    names: dict[str, dict[str, Any]] = {}
    versions: dict[str, Any] = {}
    for key, rep in reports.items():
        for name, sites in rep["uses"].items():
            entry = names.setdefault(name, {"used_on": [], "sites": set()})
            entry["used_on"].append(key)
            entry["sites"].update(s for s in sites if s.startswith("ibit_deploy/"))
        versions[key] = {
            "tensorrt": rep["tensorrt"],
            "targets": {t["target"]: {"status": t["status"], **({"error": t["error"]} if "error" in t else {})}
                        for t in rep["targets"]},
            "findings": rep["findings"],
            "names_used": len(rep["uses"]),
            "static_scan_missing": [s for s in rep.get("static_scan", []) if s["status"] == "missing"],
        }
    return {"versions": versions, "skipped": dict(skipped or {}),
            "names": {n: {"used_on": e["used_on"], "sites": sorted(e["sites"])} for n, e in sorted(names.items())}}


def render_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as Markdown: code path statuses per version, then one row per TensorRT name."""
    keys = list(summary["versions"])
    lines = ["# TensorRT API conformance: names the project uses", ""]
    for key, reason in summary["skipped"].items():
        lines.append(f"- TensorRT {key}: **skipped**: {reason}")
    if keys:
        lines += ["| code path | " + " | ".join(f"TensorRT {summary['versions'][k]['tensorrt']}" for k in keys) + " |",
                  "|---|" + "---|" * len(keys)]
        targets = list(next(iter(summary["versions"].values()))["targets"])
        for target in targets:
            cells = [summary["versions"][k]["targets"].get(target, {}).get("status", "-") for k in keys]
            lines.append(f"| {target} | " + " | ".join(cells) + " |")
        lines.append("")
        for key in keys:
            ver = summary["versions"][key]
            lines.append(f"- TensorRT {ver['tensorrt']}: {ver['names_used']} names used, {len(ver['findings'])} "
                         f"finding(s), {len(ver['static_scan_missing'])} statically written name(s) missing")
            lines += [f"  - {f['kind']} `{f['name']}` at {f['site']}: {f['detail']}" for f in ver["findings"]]
        lines += ["", "| TensorRT name | " + " | ".join(f"used on {k}" for k in keys) + " | where (project) |",
                  "|---|" + "---|" * len(keys) + "---|"]
        for name, entry in summary["names"].items():
            cells = ["yes" if k in entry["used_on"] else "-" for k in keys]
            sites = ", ".join(entry["sites"][:4]) + (" ..." if len(entry["sites"]) > 4 else "")
            lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {sites} |")
    return "\n".join(lines) + "\n"
