"""Which TensorRT names the project uses, per TensorRT version, checked against the real bindings (issue 11).

    python benchmarks/trt_api_report.py                      # every version -> benchmarks/results/trt_api_usage.*
    python benchmarks/trt_api_report.py --version 10.3 --out /tmp/trt_api

Runs every code path of ibit_deploy.conformance.paths.CONFORMANCE_TARGETS against the real tensorrt-cu12-bindings
of each version (pip-downloaded and cached, C stub compiled here) plus the static name scan of ibit_deploy/, and
writes <out>.json and <out>.md. Exit 0 all conform, 1 a finding, 3 no version's bindings could be prepared.
No GPU is involved: nothing here builds or runs an engine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ibit_deploy.conformance.bindings import VERSIONS, BindingsUnavailable, check_version, run_conformance
from ibit_deploy.conformance.report import render_markdown, usage_report
from ibit_deploy.devicekit.fileio import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="append", help=f"TensorRT version(s) to check (default: all of "
                                                      f"{', '.join(VERSIONS)})")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "trt_api_usage",
                   help="output path without suffix (.json and .md are written)")
    args = p.parse_args(argv)
    try:
        versions = [check_version(v) for v in (args.version or VERSIONS)]
    except ValueError as exc:
        p.error(str(exc))
    reports, skipped = {}, {}
    for version in versions:
        print(f"TensorRT {version}: running {version} conformance ...", file=sys.stderr)
        try:
            reports[version] = run_conformance(version, scan=[REPO / "ibit_deploy"], root=REPO)
        except BindingsUnavailable as exc:
            skipped[version] = str(exc)
    summary = usage_report(reports, skipped)
    atomic_write_json(args.out.with_suffix(".json"), summary)
    text = render_markdown(summary)
    atomic_write_text(args.out.with_suffix(".md"), text)
    print(text)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}", file=sys.stderr)
    if not reports:
        return 3
    failed = any(v["findings"] or v["static_scan_missing"] or any(
        t["status"] not in ("ok", "expected") for t in v["targets"].values()) for v in summary["versions"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
