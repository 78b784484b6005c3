"""Jetson benchmarking protocol: detect the board, record its power mode and clocks, sample power with tegrastats.

Nothing here changes the board's state unless asked: ``jetson_state(lock_clocks=True)`` runs ``sudo -n
jetson_clocks`` (non-interactive; it fails rather than prompting for a password). ``nvpmodel -q`` and
``jetson_clocks --show`` are only read.

tegrastats power rails differ across boards and JetPack releases; each is ``NAME current/average`` in milliwatts::

    JetPack 4 (Nano, TX2):      POM_5V_IN 2318/2318 POM_5V_GPU 0/0 POM_5V_CPU 349/349
    JetPack 4 (Xavier NX):      VDD_IN 4251/4251 VDD_CPU_GPU_CV 620/620 VDD_SOC 1240/1240
    JetPack 5/6 (Orin Nano/NX): VDD_IN 5060mW/5060mW VDD_CPU_GPU_CV 1234mW/1234mW VDD_SOC 1400mW/1400mW
    JetPack 5/6 (AGX Orin):     VDD_GPU_SOC 2345mW/2345mW VDD_CPU_CV 400mW/400mW VIN_SYS_5V0 3520mW/3520mW

The board's total is the input rail where there is one (``VDD_IN``, ``POM_5V_IN``); otherwise (AGX Xavier, AGX
Orin) the sum of the listed rails, which leaves out some board losses; ``total_source`` in the summary says which.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
NOT_RAILS = {"RAM", "SWAP", "IRAM", "LFB"}
_RAIL_RE = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+(?:\.\d+)?)(?:mW)?/(\d+(?:\.\d+)?)(?:mW)?(?=\s|$)")
_NVP_NAME_RE = re.compile(r"NV Power Mode:\s*(\S+)")
_L4T_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


def detect_jetson(root: str | Path = "/") -> dict[str, Any]:
    """{"is_jetson", "model", "l4t", "reason"} from ``/etc/nv_tegra_release`` and ``/proc/device-tree/model``."""
    root = Path(root)
    release = root / "etc/nv_tegra_release"
    model_file = root / "proc/device-tree/model"
    model = _read(model_file).replace("\x00", "").strip() or None
    l4t = None
    if release.is_file():
        m = _L4T_RE.search(_read(release))
        l4t = f"R{m.group(1)}.{m.group(2)}" if m else _read(release).splitlines()[0].strip() or "unknown"
    is_jetson = release.is_file() or bool(model and ("jetson" in model.lower() or "tegra" in model.lower()))
    reason = None if is_jetson else (f"not a Jetson: no {release} and {model_file} does not name a Jetson "
                                     f"({model or 'absent'})")
    return {"is_jetson": is_jetson, "model": model, "l4t": l4t, "reason": reason}


def parse_nvpmodel(text: str) -> dict[str, Any]:
    """``nvpmodel -q`` output -> {"name": "MAXN", "id": 0} (None where not printed)."""
    name = _NVP_NAME_RE.search(text)
    ids = [line.strip() for line in text.splitlines() if line.strip().isdigit()]
    return {"name": name.group(1) if name else None, "id": int(ids[-1]) if ids else None}


def jetson_state(lock_clocks: bool = False, run: Callable[..., Any] = subprocess.run,
                 root: str | Path = "/") -> dict[str, Any]:
    """Everything recorded about a Jetson for a benchmark: model, L4T, power mode, clocks; ``available`` False
    (with ``reason``) elsewhere. ``lock_clocks`` runs ``sudo -n jetson_clocks`` first (the protocol's step)."""
    info = detect_jetson(root)
    state: dict[str, Any] = {"available": info["is_jetson"], "reason": info["reason"], "model": info["model"],
                             "l4t": info["l4t"], "nvpmodel": None, "power_mode": None, "jetson_clocks": None,
                             "clocks_locked": False}
    if not info["is_jetson"]:
        return state
    if lock_clocks:
        done = _run(run, ["sudo", "-n", "jetson_clocks"])
        state["clocks_locked"] = done["returncode"] == 0
        if not state["clocks_locked"]:
            state["clocks_lock_error"] = done["output"][-500:]
    nvp = _run(run, ["nvpmodel", "-q"])
    state["nvpmodel"] = nvp["output"]
    state["power_mode"] = parse_nvpmodel(nvp["output"]) if nvp["returncode"] == 0 else None
    state["jetson_clocks"] = _run(run, ["jetson_clocks", "--show"])["output"]
    return state


def parse_tegrastats_line(line: str) -> dict[str, float]:
    """Current power (mW) of every rail in one tegrastats line, e.g. {"VDD_IN": 5060.0, "VDD_SOC": 1400.0}."""
    return {name: float(cur) for name, cur, _ in _RAIL_RE.findall(line) if name not in NOT_RAILS}


def total_power(rails: dict[str, float]) -> tuple[float | None, str]:
    """(board total in mW, how it was obtained) from one sample's rails."""
    for name in TOTAL_RAILS:
        if name in rails:
            return rails[name], name
    if rails:
        return sum(rails.values()), "sum of rails: " + "+".join(sorted(rails))
    return None, "no power rails in tegrastats output"


def summarize_power(samples: Sequence[dict[str, float]], images: int, seconds: float) -> dict[str, Any]:
    """Mean power of every rail and of the board, and energy per image (mJ) over a window of ``seconds``."""
    totals = [total_power(s) for s in samples if s]
    values = [t for t, _ in totals if t is not None]
    if not values:
        return {"samples": len(samples), "mean_power_mW": None, "energy_per_image_mJ": None, "rails_mean_mW": {},
                "total_source": totals[0][1] if totals else "no tegrastats samples in the timed window",
                "window_s": seconds, "images": images}
    names = sorted({k for s in samples for k in s})
    rails = {n: sum(s[n] for s in samples if n in s) / sum(1 for s in samples if n in s) for n in names}
    mean = sum(values) / len(values)
    # mW x s = mJ: the mean power over the window, times its length, shared by the images processed in it.
    energy = mean * seconds / images if images > 0 else None
    return {"samples": len(values), "mean_power_mW": mean, "energy_per_image_mJ": energy, "rails_mean_mW": rails,
            "total_source": totals[0][1], "window_s": seconds, "images": images}


class TegrastatsSampler:
    """Context manager running ``tegrastats --interval N`` while a measurement runs.

    ``with TegrastatsSampler(100) as s: ...`` then ``s.summary(images=..., seconds=...)``. ``command`` replaces the
    tegrastats argv (tests use a script printing sample lines). Lines are read by a thread; only lines read
    between ``__enter__`` and ``__exit__`` count.
    """

    def __init__(self, interval_ms: int = 100, command: Sequence[str] | None = None) -> None:
        if interval_ms < 1:
            raise ValueError(f"tegrastats interval must be >= 1 ms, got {interval_ms}")
        self.command = list(command) if command else ["tegrastats", "--interval", str(int(interval_ms))]
        self.samples: list[dict[str, float]] = []
        self.lines: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._recording = False
        self._started = 0.0
        self.elapsed_s = 0.0

    def __enter__(self) -> TegrastatsSampler:
        try:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                          bufsize=1)
        except OSError as exc:
            raise RuntimeError(f"cannot start {' '.join(self.command)}: {exc}") from exc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._recording = True
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_s = time.perf_counter() - self._started
        self._recording = False
        if self._proc is not None:
            self._proc.terminate()  # our own child, by its handle
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def summary(self, images: int, seconds: float | None = None) -> dict[str, Any]:
        """:func:`summarize_power` of the samples taken, over ``seconds`` (default: the context's duration)."""
        return summarize_power(self.samples, images, self.elapsed_s if seconds is None else seconds)

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if not self._recording:
                break
            self.lines.append(line.rstrip("\n"))
            rails = parse_tegrastats_line(line)
            if rails:
                self.samples.append(rails)


def _run(run: Callable[..., Any], argv: list[str]) -> dict[str, Any]:
    try:
        done = run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"returncode": None, "output": f"{' '.join(argv)}: {exc}"}
    return {"returncode": done.returncode, "output": (done.stdout or "") + (done.stderr or "")}


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
