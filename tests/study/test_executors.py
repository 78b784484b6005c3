"""The executor seam: what each run asks of a machine, and ``--executor ray`` refused clearly (exit 2, nothing
written) without Ray or without a cluster at the address given."""

from __future__ import annotations

import socket
import sys

import pytest

from ibit_deploy.cli.main import main
from ibit_deploy.study.executors.base import Needs, run_needs

ARGV = ["compare", "--data", "synthetic:256", "--candidates", "vit", "--seeds", "0", "--fractions", "1.0",
        "--embed-dim", "32", "--depth", "2", "--num-heads", "2", "--batch-size", "16", "--steps", "24"]


@pytest.mark.parametrize("study, train, needs", [
    ({"threads": 1, "backend": "ort-cpu"}, {"device": "cpu"}, Needs(1, 0)),
    ({"threads": 4, "backend": "ort-cpu"}, None, Needs(4, 0)),
    ({"threads": 2, "backend": "ort-cuda"}, {"device": "cpu"}, Needs(2, 1)),
    ({"threads": 1, "backend": "tensorrt"}, {"device": "cpu"}, Needs(1, 1)),
    ({"threads": 1, "backend": "ort-cpu"}, {"device": "cuda:0"}, Needs(1, 1)),
])
def test_a_run_needs_its_threads_and_a_gpu_where_it_trains_or_is_timed_on_one(study, train, needs):
    assert run_needs(study, train) == needs


def test_without_ray_the_ray_executor_exits_2_saying_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    out = tmp_path / "study"
    assert main([*ARGV, "--out", str(out), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "--executor ray needs Ray" in err and 'pip install ".[ray]"' in err and "Traceback" not in err
    assert not out.exists()


def test_no_cluster_at_the_address_exits_2_at_once(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "study"
    assert main([*ARGV, "--out", str(out), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"--ray-address 127.0.0.1:{port}: no Ray head node answers there" in err and "ray start --head" in err
    assert not out.exists()
