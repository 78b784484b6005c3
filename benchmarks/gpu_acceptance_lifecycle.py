"""The engine-lifecycle and application-latency stages of the GPU acceptance (issues 23 and 24).

Each stage is what a user runs, through the console scripts and the bundle's own kit:

- ``engine-compat``: ``build_engine.py BUNDLE --engine-compat version`` builds a version-compatible engine and checks
  it against ONNX Runtime, opened the way ``runtime.load`` opens it (``engine_host_code_allowed``);
- ``refit``: a second checkpoint of the same model (another seed) reaches a ``--refittable`` bundle through
  ``ibit-deploy refit`` (desktop) and ``build_engine.py --refit`` (device), with the refitted engine's check;
- ``attention-op``: a bias-mode model exported with ``--attention onnx-attention``; the kit builds from
  ``model.attn.onnx`` where TensorRT >= 10.14 parses it and records the form (else the MatMul fallback);
- ``end-to-end CUDA``: ``ibit-bench --end-to-end`` on real digit PNGs with ``ort-cuda`` and ``tensorrt``, with the
  share of the total spent outside the engine.

None of these has run yet on a GPU (no GPU was lent to the sessions that wrote them): the first run on one is their
test, and ``acceptance.md`` records what passed and failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SMALL_MODEL = "ibit_test_patch4_28"
DIGITS = 64  # PNG files for the end-to-end stage


def _engine_entries(bundle: Path) -> list[dict[str, Any]]:
    path = bundle / "manifest.json"
    if not path.is_file():
        return []
    return [a for a in json.loads(path.read_text()).get("artifacts", []) if a.get("kind") == "engine"]


def _needs_trt(env: dict[str, Any]) -> str | None:
    """Why a stage that builds an engine cannot run here, None when it can."""
    if not env["tensorrt"]:
        return "the tensorrt Python package is not installed"
    if not env["cuda"]:
        return f"no CUDA: {env['cuda_reason']}"
    return None


def write_digit_pngs(folder: Path, count: int = DIGITS) -> Path:
    """``count`` real MNIST digits (the bundled mnist5k, as the serving benchmark encodes them) as PNGs in ``folder``."""
    from service_batching import mnist_pngs  # beside this script

    folder.mkdir(parents=True, exist_ok=True)
    for i, body in enumerate(mnist_pngs(count)):
        (folder / f"{i:03d}.png").write_bytes(body)
    return folder


def add_lifecycle_stages(acc: Any, env: dict[str, Any], out: Path, ckpt: Path, bundle: Path, *, bin_dir: Path,
                         epochs: int, quick: bool) -> None:
    """Append the four stages to acceptance ``acc`` (``ckpt``/``bundle``: the main run's checkpoint and bundle)."""
    device = ["--device", "cuda", "--amp"] if env["cuda"] else ["--device", "cpu", "--no-amp"]
    steps = ["--max-steps-per-epoch", "20"] if quick or not env["cuda"] else []
    relax = ["--max-drop", "100"] if quick or not env["cuda"] else []  # smoke checkpoints: gates judge no accuracy

    def train(name: str, *extra: str) -> tuple[int, str]:
        return acc.run(name, [bin_dir / "ibit-train", "--model", SMALL_MODEL, "--data", "mnist5k", "--no-progress",
                              *device, "--epochs", str(epochs if env["cuda"] else 1), *steps, *extra])

    def engine_compat() -> tuple[str, str]:
        if (why := _needs_trt(env)) is not None:
            return "skip", why
        if not (bundle / "build_engine.py").is_file():
            return "skip", "no bundle"
        engine = bundle / "engine.version-compatible.plan"
        code, tail = acc.run("engine-compat", [sys.executable, bundle / "build_engine.py", bundle, "--engine-compat",
                                               "version", "--engine", engine])
        entry = next((e for e in _engine_entries(bundle) if e.get("path") == engine.name), {})
        detail = f"engine_compat {entry.get('engine_compat')}, check {json.dumps(entry.get('verification'))[:200]}"
        return ("pass", detail) if code == 0 else ("fail", f"exit {code}: {tail}")
    acc.stage("engine-compat (build_engine.py --engine-compat version)", engine_compat)

    def refit() -> tuple[str, str]:
        if (why := _needs_trt(env)) is not None:
            return "skip", why
        if not (ckpt / "config.json").is_file():
            return "skip", "no checkpoint"
        second, refittable = out / "checkpoint-seed1", out / "bundle-refit"
        code, tail = train("refit-train-seed1", "--seed", "1", "--out", second)
        if code != 0:
            return "fail", f"training the second checkpoint: {tail}"
        code, tail = acc.run("refit-export", [bin_dir / "ibit-export", ckpt, "--to", "tensorrt", "--refittable",
                                              "--precision", "fp32", "--out", refittable, *relax])
        if code != 0:
            return "fail", f"ibit-export --refittable exit {code}: {tail}"
        code, tail = acc.run("refit-desktop", [bin_dir / "ibit-deploy", "refit", refittable, second])
        if code != 0:
            return "fail", f"ibit-deploy refit exit {code}: {tail}"
        code, tail = acc.run("refit-device", [sys.executable, refittable / "build_engine.py", refittable, "--refit"])
        report = refittable / "engine.refit.json"
        detail = json.loads(report.read_text()) if report.is_file() else {}
        summary = {"refit_seconds": (detail.get("refit") or {}).get("refit_seconds"),
                   "verification": detail.get("verification")}
        return ("pass", f"refitted and checked: {json.dumps(summary)[:300]}") if code == 0 else (
            "fail", f"build_engine.py --refit exit {code}: {tail}")
    acc.stage("refit (ibit-deploy refit + build_engine.py --refit)", refit)

    def attention_op() -> tuple[str, str]:
        bias_ckpt, attn_bundle = out / "checkpoint-bias", out / "bundle-attention-op"
        code, tail = train("attention-op-train", "--model-kwargs", '{"attn_mode": "bias"}', "--out", bias_ckpt)
        if code != 0:
            return "fail", f"training the bias-mode model: {tail}"
        code, tail = acc.run("attention-op-export", [bin_dir / "ibit-export", bias_ckpt, "--attention",
                                                     "onnx-attention", "--precision", "fp32", "--out", attn_bundle,
                                                     *relax])
        if code != 0:
            return "fail", f"ibit-export --attention onnx-attention exit {code}: {tail}"
        if (why := _needs_trt(env)) is not None:
            return "pass", f"model.attn.onnx exported and gated on ONNX Runtime; engine not built ({why})"
        code, tail = acc.run("attention-op-build", [sys.executable, attn_bundle / "build_engine.py", attn_bundle])
        entry = next(iter(_engine_entries(attn_bundle)), {})
        detail = {k: entry.get(k) for k in ("tensorrt", "built_from", "attention_form", "attention_note")}
        return ("pass", json.dumps(detail)[:300]) if code == 0 else ("fail", f"exit {code}: {tail}")
    acc.stage("attention-op (--attention onnx-attention, kit picks the form)", attention_op)

    def end_to_end_cuda() -> tuple[str, str]:
        if not env["cuda"]:
            return "skip", f"no CUDA: {env['cuda_reason']}"
        if not (bundle / "manifest.json").is_file():
            return "skip", "no bundle"
        digits = write_digit_pngs(out / "digits")
        backends = "ort-cuda,tensorrt" if _engine_entries(bundle) else "ort-cuda"
        report_dir = out / "bench-end-to-end"
        code, tail = acc.run("end-to-end-cuda", [bin_dir / "ibit-bench", bundle, "--backends", backends,
                                                 "--end-to-end", digits, "--batches", "1,8", "--out", report_dir,
                                                 "--quiet"])
        path = report_dir / "report.json"
        if not path.is_file():
            return "fail", f"exit {code}, no report: {tail}"
        section = json.loads(path.read_text()).get("end_to_end") or {}
        rows = []
        for name, row in (section.get("runners") or {}).items():
            for entry in row.get("batches", []) if row.get("status") == "ok" else []:
                if entry.get("status") == "ok":
                    share = entry.get("outside_inference_share")
                    rows.append(f"{name}@{entry['batch']}: {entry['end_to_end']['p50_ms']:.3g} ms p50, "
                                f"{'n/a' if share is None else f'{100 * share:.0f}%'} outside the engine")
        return ("pass" if code == 0 and rows else "fail"), "; ".join(rows) or tail
    acc.stage("end-to-end on CUDA (ibit-bench --end-to-end)", end_to_end_cuda)
