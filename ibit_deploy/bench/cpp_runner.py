"""The C++ runners' end-to-end rows (``ibit-bench --end-to-end DIR --cpp-runner BINARY``): the same image files,
the same batch sizes, the same statistics as the Python runtime's rows.

The runner (``export/cpp``: ``ort_runner``) is given the bundle's ONNX of each precision, its manifest and B image
files per batch size, and prints with ``--stages-json -`` every timed run's stage times (``iterations``). Those go
through :func:`~ibit_deploy.bench.end_to_end.summarize` like the Python runtime's, so the two rows compare stage by
stage. Stages the runner does not time (host/device copies on the CPU) are not applicable, never zero.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from ..devicekit.fileio import parse_json_text
from ..devicekit.layout import MANIFEST_FILE
from ..errors import BackendUnavailable, BadInput
from .end_to_end import STAGES, summarize

RUNTIME = "cpp"
CPP_BACKENDS = ("ort-cpu",)  # what ort_runner runs; trt_runner needs an engine and a GPU (untested here)
TIMEOUT_S = 600.0


def check_binary(path: str | Path) -> Path:
    """``path`` as an executable file, or BadInput naming it and how to build one."""
    binary = Path(path)
    if not binary.is_file():
        raise BadInput(f"--cpp-runner {path}: no such file; build it with `cmake -S export/cpp -B build/cpp && cmake "
                       f"--build build/cpp` (see export/cpp/README.md)")
    if not binary.stat().st_mode & 0o111:
        raise BadInput(f"--cpp-runner {path}: not executable")
    return binary


def records_of(report: dict[str, Any], batch: int, where: str) -> list[dict[str, Any]]:
    """The per-run records of a runner's ``--stages-json`` report, in :func:`summarize`'s shape."""
    runs = report.get("iterations") if isinstance(report, dict) else None
    if not isinstance(runs, dict) or not isinstance(runs.get("end_to_end"), list):
        raise ValueError(f"{where}: the runner's report has no per-run times ('iterations'); rebuild it from this "
                         f"version of export/cpp")
    total = runs["end_to_end"]
    timed = {stage: runs[stage] for stage in STAGES if stage in runs}
    if any(not isinstance(v, list) or len(v) != len(total) for v in timed.values()):
        raise ValueError(f"{where}: every stage must have one time per run ({len(total)} runs)")
    return [{"batch": batch, "stages_ms": {stage: (timed[stage][i] if stage in timed else None) for stage in STAGES},
             "end_to_end_ms": total[i]} for i in range(len(total))]


def cpp_rows(binary: str | Path, bundle: Path, artifacts: dict[str, str], files: list[Path], batches: list[int], *,
             warmup: int, iters: int, threads: int) -> dict[str, dict[str, Any]]:
    """``cpp:ort-cpu:<precision>`` rows of the report's ``end_to_end.runners``: ``binary`` run on ``artifacts``
    (precision -> the bundle file the Python runtime's ort-cpu row ran, so both rows time the same graph) at every
    batch size (the first B files of the folder, cycled when B exceeds them)."""
    binary = check_binary(binary)
    rows: dict[str, dict[str, Any]] = {}
    for precision, artifact in artifacts.items():
        row: dict[str, Any] = {"runtime": RUNTIME, "backend": "ort-cpu", "precision": precision, "artifact": artifact,
                               "status": "ok", "reason": None, "batches": []}
        rows[f"{RUNTIME}:ort-cpu:{precision}"] = row
        try:
            for batch in sorted({1, *batches}):
                chosen = [str(files[k % len(files)]) for k in range(batch)]
                argv = [str(binary), "--model", str(bundle / row["artifact"]), "--manifest",
                        str(bundle / MANIFEST_FILE), "--topk", "0", "--warmup", str(warmup), "--iters", str(iters),
                        "--threads", str(max(threads, 1)), "--stages-json", "-", *chosen]
                row["batches"].append(_run(argv, batch))
        except (ValueError, BackendUnavailable, OSError, subprocess.SubprocessError) as exc:
            row.update(status="error", reason=str(exc))
    return rows


def _run(argv: list[str], batch: int) -> dict[str, Any]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise BackendUnavailable(f"{Path(argv[0]).name} exited {proc.returncode} at batch {batch}: {tail}")
    report = parse_json_text(proc.stdout, f"{Path(argv[0]).name}'s --stages-json output", "stage report")
    note = "the ONNX Runtime CPU runner has no host/device copies"
    return summarize(records_of(report, batch, Path(argv[0]).name), {"h2d": note, "d2h": note})
