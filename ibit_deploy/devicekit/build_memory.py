"""Peak host and device memory of an engine build.

Host: the process's peak resident set (``getrusage``), read after the build: a process-wide peak, so it includes
what the process held before the build. Device: a thread samples ``cudaMemGetInfo`` every ``interval`` seconds during
the build and keeps the highest ``total - free``; the record is that peak minus the value before the build (on a
Jetson the GPU shares system memory, so other processes' allocations count too). Without cuda-python or a GPU the
device figure is None with the reason. Untested on a GPU.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any

SAMPLE_INTERVAL_S = 0.05


def host_peak_rss_mib() -> float | None:
    """The process's peak resident set size in MiB (None where ``resource`` does not exist)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)  # bytes on macOS, KiB on Linux


class DeviceMemorySampler:
    """``with DeviceMemorySampler(cudart) as s: build()`` then ``s.record()``."""

    def __init__(self, cudart: Any | None, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.cudart, self.interval = cudart, interval
        self.baseline: int | None = None
        self.peak: int | None = None
        self.error: str | None = None if cudart is not None else "cuda-python is not available"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _used(self) -> int:
        err, free, total = self.cudart.cudaMemGetInfo()
        if int(err) != 0:
            raise RuntimeError(f"cudaMemGetInfo failed ({err})")
        return int(total) - int(free)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak or 0, self._used())
            except Exception as exc:  # a description only: never fail a build over it
                self.error = str(exc)
                return

    def __enter__(self) -> DeviceMemorySampler:
        if self.cudart is not None:
            try:
                self.baseline = self.peak = self._used()
            except Exception as exc:
                self.error = f"cudaMemGetInfo: {exc}"
            else:
                self._thread = threading.Thread(target=self._run, name="device-memory-sampler", daemon=True)
                self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            try:
                self.peak = max(self.peak or 0, self._used())
            except Exception as error:
                self.error = self.error or str(error)

    def record(self) -> dict[str, Any]:
        if self.baseline is None or self.peak is None:
            return {"device_peak_mib": None, "device_memory_note": self.error}
        return {"device_peak_mib": round((self.peak - self.baseline) / (1 << 20), 1),
                "device_used_before_mib": round(self.baseline / (1 << 20), 1)}
