"""One acceptance run for an NVIDIA machine: every stage of the GPU path, a pass/fail/skip table with reasons.

    bash benchmarks/gpu_acceptance.sh                         # on the GPU machine (wraps this script)
    python benchmarks/gpu_acceptance.py --out /tmp/accept --epochs 3
    python benchmarks/gpu_acceptance.py --out /tmp/accept --quick   # CI: tiny budgets, CPU stages only where no GPU

Stages (none aborts the run; each is pass, fail or skip with the reason):
  environment      nvidia-smi, torch CUDA, ONNX Runtime providers, tensorrt, torch_tensorrt, trtexec, cmake
  conformance      TensorRT API conformance against the real 10.3 / 11.4 bindings (benchmarks/trt_api_report.py)
  train-cuda       ibit-train on CUDA with AMP for --epochs epochs
  train-cpu        (only without CUDA) a tiny CPU checkpoint, so the CPU stages below still run
  export           ibit-export --to tensorrt --precision fp32,int8,fp16 (engine here where TensorRT and a GPU are)
  onnx table       every ONNX of the bundle against TensorRT 10.3's ONNX parser table (CPU)
  engine           the engine ibit-export built and checked against ONNX Runtime (from the manifest)
  device-script    the bundle's build_engine.sh --benchmark (trtexec) or build_engine.py
  precision-auto   the bundle's build_engine.py --precision auto: fp32/fp16/int8 engines checked against ONNX
                   Runtime, timed with trtexec, the fastest that passes kept (needs tensorrt, trtexec and CUDA)
  bench <backend>  ibit-bench: torch on CUDA, ONNX Runtime CUDA, TensorRT (and ONNX Runtime CPU), one row each
  cpp-build        CMake build of export/cpp (ort_runner; trt_runner where TensorRT and CUDA are found)
  cpp-ort / cpp-trt  the C++ runners on the bundle's model / engine
  torch-tensorrt   ibit-export --to torch-tensorrt (where torch_tensorrt and CUDA are)
  engine-compat    build_engine.py --engine-compat version: a version-compatible engine, checked (issue 23)
  refit            a second checkpoint through ibit-deploy refit and build_engine.py --refit, checked (issue 23)
  attention-op     a bias-mode model exported --attention onnx-attention; the kit's form choice (issue 23)
  end-to-end CUDA  ibit-bench --end-to-end on digit PNGs, ort-cuda and tensorrt, share outside the engine (issue 24)
                   (these four: benchmarks/gpu_acceptance_lifecycle.py)
Writes OUT/acceptance.json and OUT/acceptance.md and prints the table. Exit 0 no stage failed, 1 a stage failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the lifecycle stages beside this script
BIN = Path(sys.executable).parent

from gpu_acceptance_lifecycle import add_lifecycle_stages  # noqa: E402

STATUSES = ("pass", "fail", "skip")


class Acceptance:
    """Runs stages, records one row per stage (or per sub-result), never stops on a failure."""

    def __init__(self, out: Path, timeout: float) -> None:
        self.out, self.timeout = out, timeout
        self.rows: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def record(self, stage: str, status: str, reason: str = "", seconds: float | None = None,
               command: Sequence[str] | None = None) -> dict[str, Any]:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        row = {"stage": stage, "status": status, "reason": reason.strip(),
               "seconds": None if seconds is None else round(seconds, 1),
               "command": " ".join(map(str, command)) if command else None}
        self.rows.append(row)
        print(f"[{status.upper():4}] {stage}: {row['reason'][:200]}", file=sys.stderr, flush=True)
        return row

    def stage(self, name: str, fn: Callable[[], tuple[str, str] | None]) -> None:
        """Run ``fn`` (returns (status, reason), or None when it recorded its own rows); an exception is a fail."""
        start = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # a broken stage is a failed stage, not a crashed run
            result = ("fail", f"{type(exc).__name__}: {exc}")
        if result is not None:
            self.record(name, *result, seconds=time.perf_counter() - start)

    def run(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> tuple[int, str]:
        """Run a command with its log in OUT/logs/<name>.log; (exit code, last lines of output)."""
        log = self.out / "logs" / f"{name.replace(' ', '_').replace('/', '_')}.log"
        start = time.perf_counter()
        try:
            proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=self.timeout,
                                  env={**os.environ, **(env or {})}, cwd=cwd, check=False)
            code, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, text = 124, f"timed out after {self.timeout:.0f} s\n{exc.stdout or ''}{exc.stderr or ''}"
        except OSError as exc:
            code, text = 127, str(exc)
        log.write_text(" ".join(map(str, argv)) + "\n\n" + text, encoding="utf-8")
        self.facts.setdefault("commands", []).append({"stage": name, "argv": [str(a) for a in argv], "exit": code,
                                                      "seconds": round(time.perf_counter() - start, 1),
                                                      "log": str(log)})
        return code, "\n".join(text.strip().splitlines()[-6:])


# --------------------------------------------------------------------------------------------------- probes

def probe_environment() -> dict[str, Any]:
    """What this machine has, each entry a value or the reason it is missing."""
    env: dict[str, Any] = {}
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
        env["gpus"] = proc.stdout.strip().splitlines() if proc.returncode == 0 else []
        env["gpu_reason"] = None if env["gpus"] else f"nvidia-smi -L failed: {proc.stderr.strip()[:200]}"
    else:
        env["gpus"], env["gpu_reason"] = [], "nvidia-smi not found (no NVIDIA driver)"
    import torch

    env["torch"] = torch.__version__
    env["cuda"] = bool(torch.cuda.is_available())
    env["cuda_reason"] = None if env["cuda"] else (
        "torch.cuda.is_available() is False" + ("" if torch.version.cuda else f" (torch {torch.__version__} is a "
                                                                              f"CPU build)"))
    try:
        import onnxruntime as ort

        env["ort_providers"] = ort.get_available_providers()
    except ImportError as exc:
        env["ort_providers"] = []
        env["ort_reason"] = str(exc)
    for module in ("tensorrt", "torch_tensorrt"):
        env[module] = _import_version(module)
    env["trtexec"] = os.environ.get("TRTEXEC") or shutil.which("trtexec") or (
        "/usr/src/tensorrt/bin/trtexec" if Path("/usr/src/tensorrt/bin/trtexec").is_file() else None)
    env["cmake"] = shutil.which("cmake")
    return env


def _import_version(module: str) -> str | None:
    """``module.__version__`` when it imports (in a subprocess: a broken install must not take this run down)."""
    if importlib.util.find_spec(module) is None:
        return None
    proc = subprocess.run([sys.executable, "-c", f"import {module}; print({module}.__version__)"],
                          capture_output=True, text=True, check=False, timeout=300)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


# --------------------------------------------------------------------------------------------------- stages

def acceptance(out: Path, *, epochs: int, quick: bool, timeout: float) -> Acceptance:
    acc = Acceptance(out, timeout)
    env = probe_environment()
    acc.facts["environment"] = env
    acc.record("environment", "pass", f"GPUs: {env['gpus'] or env['gpu_reason']}; torch {env['torch']} CUDA "
                                      f"{env['cuda']}; ORT {env['ort_providers']}; tensorrt {env['tensorrt']}; "
                                      f"torch_tensorrt {env['torch_tensorrt']}; trtexec {env['trtexec']}")
    ckpt, bundle = out / "checkpoint", out / "bundle"

    def conformance() -> tuple[str, str]:
        code, tail = acc.run("conformance", [sys.executable, REPO / "benchmarks" / "trt_api_report.py",
                                             "--out", out / "trt_api_usage"])
        return {0: ("pass", "every code path conforms to TensorRT 10.3 and 11.4 (trt_api_usage.md)"),
                3: ("skip", f"bindings unavailable: {tail}")}.get(code, ("fail", tail))
    acc.stage("conformance (TensorRT API, CPU)", conformance)

    train_common = ["--model", "ibit_test_patch4_28", "--data", "mnist5k", "--out", ckpt, "--no-progress"]

    def train_cuda() -> tuple[str, str]:
        if not env["cuda"]:
            return "skip", f"no CUDA: {env['cuda_reason']}"
        argv = [BIN / "ibit-train", *train_common, "--device", "cuda", "--amp", "--epochs", str(epochs)]
        if quick:
            argv += ["--max-steps-per-epoch", "20"]
        code, tail = acc.run("train-cuda", argv)
        return ("pass", f"{epochs} epoch(s) on CUDA with AMP") if code == 0 else ("fail", tail)
    acc.stage("train-cuda (AMP)", train_cuda)

    if not env["cuda"]:
        def train_cpu() -> tuple[str, str]:
            argv = [BIN / "ibit-train", *train_common, "--device", "cpu", "--no-amp", "--epochs", "1",
                    "--max-steps-per-epoch", "5" if quick else "200"]
            code, tail = acc.run("train-cpu", argv, env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
            return ("pass", "CPU checkpoint for the CPU stages (not an acceptance of training)") if code == 0 \
                else ("fail", tail)
        acc.stage("train-cpu (fallback)", train_cpu)

    def export() -> tuple[str, str]:
        if not (ckpt / "config.json").is_file():
            return "skip", "no checkpoint (training did not finish)"
        argv = [BIN / "ibit-export", ckpt, "--to", "tensorrt", "--precision", "fp32,int8,fp16", "--out", bundle,
                "--max-batch", "32", "--opt-batch", "8"]
        smoke = quick or not env["cuda"]  # a few CPU steps: the accuracy gates would judge an untrained model
        if quick:
            argv += ["--calib-count", "64", "--eval-count", "200"]
        if smoke:
            argv += ["--max-drop", "100"]
        code, tail = acc.run("export", argv)
        if code == 0:
            return "pass", "bundle with fp32 / int8 / fp16 ONNX and the TensorRT kit" + (
                " (smoke checkpoint: accuracy gates relaxed with --max-drop 100)" if smoke else "")
        return "fail", (f"exit {code} (1: an accuracy gate or check failed, see the manifest; 3: no engine) " + tail)
    acc.stage("export", export)

    def onnx_table() -> tuple[str, str]:
        if _manifest(bundle) is None:
            return "skip", "no bundle"
        sys.path.insert(0, str(REPO))
        from ibit_deploy.conformance.onnx_support import check_bundle

        results = check_bundle(bundle)
        bad = {p: r["problems"][:3] for p, r in results.items() if not r["passed"]}
        return ("fail", json.dumps(bad)[:400]) if bad else (
            "pass", f"{', '.join(results)} pass TensorRT 10.3's ONNX parser table")
    acc.stage("onnx vs TensorRT 10.3 parser table", onnx_table)

    def engine() -> tuple[str, str]:
        manifest = _manifest(bundle)
        if manifest is None:
            return "skip", "no bundle"
        art = next((a for a in manifest.get("artifacts", []) if a.get("kind") == "engine"), None)
        if art is None:
            why = ("TensorRT not importable here" if not env["tensorrt"] else
                   "no CUDA GPU" if not env["cuda"] else "ibit-export built no engine (see logs/export.log)")
            return ("skip" if not env["tensorrt"] or not env["cuda"] else "fail"), why
        check = art.get("verification", {})
        return ("pass" if check.get("passed") else "fail"), f"TensorRT {art.get('tensorrt')}: {json.dumps(check)[:300]}"
    acc.stage("engine (ibit-export, checked vs ONNX Runtime)", engine)

    def device_script() -> tuple[str, str]:
        if not (bundle / "build_engine.sh").is_file():
            return "skip", "no bundle"
        if not env["trtexec"] and not env["tensorrt"]:
            return "skip", "neither trtexec nor the tensorrt Python package is installed"
        code, tail = acc.run("device-script", ["bash", bundle / "build_engine.sh", "--benchmark",
                                               "--engine", bundle / "engine.device.plan"])
        return ("pass", "built, checked and recorded on this device") if code == 0 else ("fail", tail)
    acc.stage("device-script (build_engine.sh)", device_script)

    def precision_auto() -> tuple[str, str]:
        if not (bundle / "build_engine.py").is_file():
            return "skip", "no bundle"
        missing = [what for what, ok in (("the tensorrt Python package", env["tensorrt"]), ("trtexec", env["trtexec"]),
                                         ("CUDA", env["cuda"])) if not ok]
        if missing:
            return "skip", f"--precision auto needs {', '.join(missing)}"
        argv = [sys.executable, bundle / "build_engine.py", "--bundle", bundle, "--precision", "auto",
                "--engine", bundle / "engine.auto.plan"]
        if quick or not env["cuda"]:
            argv += ["--max-drop", "100"]  # a smoke checkpoint: the top-1 budget would judge an untrained model
        code, tail = acc.run("precision-auto", argv)
        selection = (_manifest(bundle) or {}).get("engine_selection") or {}
        if code == 0:
            return "pass", f"chose {selection.get('chosen')}: {selection.get('reason')}"
        return "fail", f"exit {code} (1: every candidate failed; 3: TensorRT/trtexec/GPU missing) {tail}"
    acc.stage("precision-auto (build_engine.py --precision auto)", precision_auto)

    def bench() -> None:
        if _manifest(bundle) is None:
            acc.record("bench", "skip", "no bundle")
            return
        backends = "torch-ref,torch-folded,ort-cpu,ort-cuda,tensorrt"
        argv = [BIN / "ibit-bench", bundle, "--backends", backends, "--limit", "200" if quick else "1000",
                "--iters", "5" if quick else "50", "--batches", "1,8", "--out", out / "bench", "--quiet"]
        if env["cuda"]:
            argv += ["--torch-device", "cuda"]
        if env["trtexec"]:
            argv += ["--trtexec"]
        start = time.perf_counter()
        code, tail = acc.run("bench", argv, env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
        report_path = out / "bench" / "report.json"
        if not report_path.is_file():
            acc.record("bench", "fail", f"exit {code}, no report: {tail}", time.perf_counter() - start, argv)
            return
        report = json.loads(report_path.read_text())
        for run in report.get("runs", []):
            status = {"ok": "pass", "skipped": "skip"}.get(run.get("status"), "fail")
            device = " on CUDA" if env["cuda"] and run.get("name", "").startswith("torch") else ""
            name = str(run.get("name"))
            label = name if ":" in name or not run.get("precision") else f"{name}:{run['precision']}"
            acc.record(f"bench {label}{device}", status, run.get("reason") or _bench_summary(run))
    acc.stage("bench", bench)

    cpp_build = out / "cpp-build"

    def cpp() -> tuple[str, str]:
        if not env["cmake"]:
            return "skip", "cmake not installed"
        # The onnxruntime wheel has no C++ headers: export/cpp/fetch_ort_headers.sh unpacks Debian's (cached).
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ibit-deploy" / "onnxruntime"
        code, headers = acc.run("cpp-ort-headers", ["bash", REPO / "export" / "cpp" / "fetch_ort_headers.sh", cache])
        configure = ["cmake", "-S", REPO / "export" / "cpp", "-B", cpp_build, f"-DORT_PYTHON={sys.executable}"]
        if code == 0 and (cache / "include" / "onnxruntime_cxx_api.h").is_file():
            configure.append(f"-DORT_INCLUDE_DIR={cache / 'include'}")
        code, tail = acc.run("cpp-configure", configure)
        if code != 0:
            missing = "nothing to build" in tail or "onnxruntime_cxx_api.h" in tail
            return ("skip" if missing else "fail"), tail + ("" if not missing else f" (headers: {headers[-200:]})")
        code, tail = acc.run("cpp-build", ["cmake", "--build", cpp_build, "-j4"])
        built = [n for n in ("ort_runner", "trt_runner") if (cpp_build / n).is_file()]
        return ("pass", f"export/cpp built: {', '.join(built)}") if code == 0 else ("fail", tail)
    acc.stage("cpp-build", cpp)

    def cpp_ort() -> tuple[str, str]:
        exe = cpp_build / "ort_runner"
        if not exe.is_file() or not (bundle / "model.onnx").is_file():
            return "skip", "ort_runner or the bundle's model.onnx missing"
        code, tail = acc.run("cpp-ort", [exe, "--model", bundle / "model.onnx", "--batch", "8", "--iters", "20",
                                         "--json", out / "cpp_ort.json"])
        return ("pass", tail.splitlines()[-1] if tail else "") if code == 0 else ("fail", tail)
    acc.stage("cpp-ort (C++ ONNX Runtime runner)", cpp_ort)

    def cpp_trt() -> tuple[str, str]:
        exe = cpp_build / "trt_runner"
        engine_file = next((p for p in (bundle / "engine.plan", bundle / "engine.device.plan") if p.is_file()), None)
        if not exe.is_file():
            return "skip", "trt_runner not built (CMake found no TensorRT / CUDA)"
        if engine_file is None:
            return "skip", "no engine in the bundle"
        code, tail = acc.run("cpp-trt", [exe, "--engine", engine_file, "--batch", "8", "--iters", "50",
                                         "--json", out / "cpp_trt.json"])
        return ("pass", tail.splitlines()[-1] if tail else "") if code == 0 else ("fail", tail)
    acc.stage("cpp-trt (C++ TensorRT runner)", cpp_trt)

    def torch_tensorrt() -> tuple[str, str]:
        if not env["torch_tensorrt"]:
            return "skip", "torch_tensorrt is not installed"
        if not env["cuda"]:
            return "skip", f"no CUDA: {env['cuda_reason']}"
        if not (ckpt / "config.json").is_file():
            return "skip", "no checkpoint"
        code, tail = acc.run("torch-tensorrt", [BIN / "ibit-export", ckpt, "--to", "torch-tensorrt", "--precision",
                                                "fp16", "--out", out / "bundle-torch-tensorrt"])
        return ("pass", "model.trt.ep saved") if code == 0 else ("fail", tail)
    acc.stage("torch-tensorrt", torch_tensorrt)
    add_lifecycle_stages(acc, env, out, ckpt, bundle, bin_dir=BIN, epochs=epochs, quick=quick)
    return acc


def _manifest(bundle: Path) -> dict[str, Any] | None:
    path = bundle / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _bench_summary(run: dict[str, Any]) -> str:
    parts = []
    acc = run.get("accuracy")
    if isinstance(acc, dict) and acc.get("top1") is not None:
        parts.append(f"top-1 {acc['top1']:.3f} on {acc.get('count')} images, agreement with the reference "
                     f"{acc.get('agreement_top1')}")
    for entry in run.get("latency") or []:
        if entry.get("status") == "ok" and entry.get("p50_ms") is not None:
            parts.append(f"b{entry['batch']} median {entry['p50_ms']:.3f} ms")
    return ", ".join(parts) or "ran"


# --------------------------------------------------------------------------------------------------- report

def render_markdown(rows: Sequence[dict[str, Any]], facts: dict[str, Any]) -> str:
    """The pass/fail/skip table as Markdown (a reason on every row that is not a plain pass)."""
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    env = facts.get("environment", {})
    lines = ["# GPU acceptance", "",
             f"GPUs: {env.get('gpus') or env.get('gpu_reason')}; "
             f"{counts['pass']} pass, {counts['fail']} fail, {counts['skip']} skip", "",
             "| stage | status | seconds | reason |", "|---|---|---|---|"]
    for r in rows:
        reason = r["reason"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['stage']} | {r['status'].upper()} | {r['seconds'] if r['seconds'] is not None else ''} "
                     f"| {reason[:400]} |")
    return "\n".join(lines) + "\n"


def write_report(acc: Acceptance) -> dict[str, Any]:
    report = {"rows": acc.rows, "facts": acc.facts,
              "passed": not any(r["status"] == "fail" for r in acc.rows)}
    (acc.out / "acceptance.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    text = render_markdown(acc.rows, acc.facts)
    (acc.out / "acceptance.md").write_text(text, encoding="utf-8")
    print(text)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("gpu_acceptance"), help="output directory")
    p.add_argument("--epochs", type=int, default=3, help="training epochs on CUDA (default 3)")
    p.add_argument("--quick", action="store_true", help="tiny budgets everywhere (CI smoke run)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per command (default 3600)")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = write_report(acceptance(args.out, epochs=args.epochs, quick=args.quick, timeout=args.timeout))
    print(f"wrote {args.out / 'acceptance.md'} and {args.out / 'acceptance.json'}", file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
