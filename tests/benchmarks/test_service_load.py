"""benchmarks/service_load.py and service_batching.py --rates: the open-loop generator, the knee, the curve files."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def load():
    return _load("service_load")


@pytest.fixture
def slow_server():
    """A real HTTP server on 127.0.0.1 answering one request at a time in 20 ms: at most ~50 requests/s."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(0.02)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _point(rate, p99, achieved=None, dropped=0, failed=0):
    return {"offered_rps": rate, "arrival_rps": rate, "achieved_rps": rate if achieved is None else achieved,
            "p99_ms": p99, "dropped": dropped, "failed": failed}


def test_knee_is_the_last_rate_before_the_first_broken_rule(load):
    curve = [_point(10, 20), _point(20, 25), _point(40, 39), _point(80, 41), _point(160, 30)]
    k = load.knee(curve)
    assert k["rate"] == 40 and k["broken_at"] == 80 and "p99 41.0 ms > 2x" in k["why"] and k["reached"]
    k = load.knee([_point(10, 20), _point(20, 22, achieved=18.0), _point(40, 20)])
    assert k["rate"] == 10 and "answered 18.0/s < 95%" in k["why"]
    k = load.knee([_point(10, 20), _point(20, 22, dropped=3)])
    assert k["rate"] == 10 and "3 arrivals dropped" in k["why"]
    k = load.knee([_point(10, 20, failed=1), _point(20, 22)])
    assert k["rate"] is None and k["broken_at"] == 10
    k = load.knee([_point(10, 20), _point(20, 22)])
    assert k["rate"] == 20 and k["reached"] is False and k["broken_at"] is None
    with pytest.raises(ValueError, match="strictly increasing"):
        load.knee([_point(20, 20), _point(10, 20)])


def test_open_loop_keeps_arriving_when_the_service_falls_behind(load, slow_server):
    light = load.open_loop(slow_server, [b"x"], rate=10, seconds=1.5, max_outstanding=8, seed=1)
    assert light["dropped"] == 0 and light["failed"] == 0 and light["completed"] == light["arrivals"] > 5
    assert light["achieved_rps"] >= 0.95 * light["arrival_rps"] * 0.8  # generous: two shared cores
    assert 15 <= light["p50_ms"] < 200
    # 200/s against a 50/s service: a closed-loop client would just wait; open-loop arrivals find every slot busy
    heavy = load.open_loop(slow_server, [b"x"], rate=200, seconds=1.0, max_outstanding=4, seed=2)
    assert heavy["arrivals"] > 120 and heavy["dropped"] > heavy["arrivals"] // 2
    assert heavy["completed"] == heavy["sent"] and heavy["p99_ms"] > 3 * light["p50_ms"]
    assert load.knee([light, heavy])["rate"] == 10
    with pytest.raises(ValueError, match="rate > 0"):
        load.open_loop(slow_server, [b"x"], rate=0, seconds=1)


def test_service_batching_writes_the_curve_with_knees(tiny_checkpoint: Path, tmp_path: Path, capsys):
    from ibit_deploy.export.pipeline import export_checkpoint

    bundle = tmp_path / "bundle"
    export_checkpoint(tiny_checkpoint, bundle)
    out = tmp_path / "curve" / "service_load.json"
    _load("service_batching").main([str(bundle), "--backend", "ort-cpu", "--rates", "20,40", "--seconds", "0.5",
                                    "--max-batch", "4", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["configs"]) == {"unbatched", "batched"} and result["rates"] == [20.0, 40.0]
    assert result["configs"]["unbatched"]["max_batch"] == 1 and result["configs"]["batched"]["max_batch"] == 4
    for config in result["configs"].values():
        assert [p["offered_rps"] for p in config["points"]] == [20.0, 40.0]
        assert all(p["completed"] > 0 and p["p50_ms"] <= p["p99_ms"] for p in config["points"])
        assert set(config["knee"]) == {"rate", "reached", "broken_at", "why", "rule"}
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "knee unbatched:" in printed and "knee batched:" in printed


def test_bad_rates_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load("service_batching").main(["bundle", "--rates", "20,-5"])
    assert exit_info.value.code == 2 and "--rates '20,-5': expected distinct rates > 0" in capsys.readouterr().err
