"""Jetson protocol helpers on SAMPLE text: tegrastats lines and nvpmodel output written for these tests from the
formats documented for each JetPack generation (not captured from real boards; the numbers are made up)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ibit_deploy.bench.jetson import (
    TegrastatsSampler,
    detect_jetson,
    jetson_state,
    parse_nvpmodel,
    parse_tegrastats_line,
    summarize_power,
    total_power,
)

# SAMPLES, one per format family.
JP4_NANO = ("RAM 2246/3964MB (lfb 25x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) CPU [11%@1479,9%@1479,"
            "off,off] EMC_FREQ 0% GR3D_FREQ 0% PLL@31C CPU@33.5C GPU@32.5C thermal@33C POM_5V_IN 2318/2400 "
            "POM_5V_GPU 0/12 POM_5V_CPU 349/360")
JP4_XAVIER_NX = ("RAM 2871/7764MB (lfb 1x4MB) CPU [3%@1190,2%@1190] EMC_FREQ 0% GR3D_FREQ 0% AUX@34C CPU@36C "
                 "VDD_IN 4251/4251 VDD_CPU_GPU_CV 620/620 VDD_SOC 1240/1240")
JP6_ORIN_NANO = ("11-21-2026 21:00:00 RAM 2100/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [2%@729,1%@729] "
                 "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] cpu@48.5C gpu@47.2C VDD_IN 5060mW/5100mW "
                 "VDD_CPU_GPU_CV 1234mW/1200mW VDD_SOC 1400mW/1400mW")
JP5_AGX_ORIN = ("RAM 5000/30536MB (lfb 5000x4MB) CPU [1%@2201] GR3D_FREQ 99%@[1300,0] VDD_GPU_SOC 2345mW/2345mW "
                "VDD_CPU_CV 400mW/400mW VIN_SYS_5V0 3520mW/3520mW VDDQ_VDD2_1V8AO 402mW/402mW")
NVPMODEL_Q = "NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n"


def test_rails_of_every_format_family():
    assert parse_tegrastats_line(JP4_NANO) == {"POM_5V_IN": 2318.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 349.0}
    assert parse_tegrastats_line(JP4_XAVIER_NX) == {"VDD_IN": 4251.0, "VDD_CPU_GPU_CV": 620.0, "VDD_SOC": 1240.0}
    assert parse_tegrastats_line(JP6_ORIN_NANO) == {"VDD_IN": 5060.0, "VDD_CPU_GPU_CV": 1234.0, "VDD_SOC": 1400.0}
    agx = parse_tegrastats_line(JP5_AGX_ORIN)
    assert agx["VDD_GPU_SOC"] == 2345.0 and len(agx) == 4  # RAM/SWAP "used/total MB" are not rails
    assert parse_tegrastats_line("RAM 1/2MB SWAP 0/0MB CPU [1%@100]") == {}


def test_total_power_prefers_the_input_rail_else_sums():
    assert total_power(parse_tegrastats_line(JP6_ORIN_NANO)) == (5060.0, "VDD_IN")
    assert total_power(parse_tegrastats_line(JP4_NANO)) == (2318.0, "POM_5V_IN")
    total, source = total_power(parse_tegrastats_line(JP5_AGX_ORIN))
    assert total == 2345 + 400 + 3520 + 402 and source.startswith("sum of rails")


def test_energy_per_image():
    samples = [{"VDD_IN": 5000.0}, {"VDD_IN": 7000.0}]
    out = summarize_power(samples, images=300, seconds=2.0)
    assert out["mean_power_mW"] == 6000.0
    assert out["energy_per_image_mJ"] == pytest.approx(6000.0 * 2.0 / 300)  # mW x s = mJ
    assert summarize_power([], images=10, seconds=1.0)["mean_power_mW"] is None


def test_nvpmodel_and_detection(tmp_path: Path):
    assert parse_nvpmodel(NVPMODEL_Q) == {"name": "MAXN", "id": 0}
    assert not detect_jetson(tmp_path)["is_jetson"]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0, GCID: 1, BOARD: generic\n")
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text("NVIDIA Jetson Orin Nano Developer Kit\x00")
    info = detect_jetson(tmp_path)
    assert info == {"is_jetson": True, "model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "R36.3.0",
                    "reason": None}


def test_state_records_commands_and_never_sudo_unless_asked(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R35 (release), REVISION: 4.1\n")
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        out = NVPMODEL_Q if argv[0] == "nvpmodel" else "GPU MaxFreq=1300500000\n"
        return subprocess.CompletedProcess(argv, 0, out, "")

    state = jetson_state(run=fake_run, root=tmp_path)
    assert state["available"] and state["power_mode"] == {"name": "MAXN", "id": 0} and not state["clocks_locked"]
    assert all(argv[0] != "sudo" for argv in calls)
    jetson_state(lock_clocks=True, run=fake_run, root=tmp_path)
    assert ["sudo", "-n", "jetson_clocks"] in calls


def test_not_a_jetson_is_reported_unavailable(tmp_path: Path):
    state = jetson_state(root=tmp_path)
    assert state["available"] is False and "not a Jetson" in state["reason"]


def test_sampler_reads_a_stand_in_tegrastats():
    script = ("import sys, time\n"
              f"for _ in range(200):\n    print({JP6_ORIN_NANO!r}, flush=True)\n    time.sleep(0.01)\n")
    with TegrastatsSampler(10, command=[sys.executable, "-c", script]) as sampler:
        deadline = time.monotonic() + 5
        while not sampler.samples and time.monotonic() < deadline:  # wait for the child's first line
            time.sleep(0.01)
    summary = sampler.summary(images=100)
    assert summary["samples"] >= 1 and summary["mean_power_mW"] == 5060.0 and summary["total_source"] == "VDD_IN"
    assert summary["energy_per_image_mJ"] == pytest.approx(5060.0 * sampler.elapsed_s / 100)
