"""The report's provenance lines: the machines that trained the runs, and teachers retrained from their records."""

from __future__ import annotations

from ibit_deploy.study.provenance import machines_line, ray_node_lines, restored_teachers_lines


def test_machines_counted_and_unrecorded_runs_named():
    results = [{"id": "a", "machine": {"cpu": "AMD EPYC", "torch_cpu_capability": "AVX512"}},
               {"id": "b", "machine": {"cpu": "AMD EPYC", "torch_cpu_capability": "AVX512"}},
               {"id": "c"}]
    line = machines_line(results)
    assert "2 run(s) on AMD EPYC (AVX512 kernels)" in line
    assert "1 run(s) finished by a worker that did not record its machine" in line
    assert machines_line([{"id": "c"}]) is None


def test_a_retrained_teacher_that_differs_is_named_with_both_top1():
    results = [
        {"id": "s0/f025/ibit_kd", "teachers_restored": [
            {"teacher": "s0/f025/resnet", "identical": False, "val_acc1": 0.982, "recorded_val_acc1": 0.984}]},
        {"id": "s1/f025/ibit_kd", "teachers_restored": [{"teacher": "s1/f025/resnet", "identical": True}]},
        {"id": "s0/f025/ibit", "teachers_restored": []},
    ]
    lines = restored_teachers_lines(results)
    assert lines == [
        "- s0/f025/ibit_kd: retrained s0/f025/resnet NOT bit-identical to its record "
        "(top-1 98.20 retrained vs 98.40 recorded)",
        "- s1/f025/ibit_kd: retrained s1/f025/resnet bit-identical to its record "
        "(top-1 of the retrained teacher not recorded)",
    ]


def test_runs_on_ray_are_listed_per_node_and_local_runs_add_nothing():
    epyc = {"cpu": "AMD EPYC", "torch_cpu_capability": "AVX512"}
    results = [{"id": "s0/f100/vit", "machine": epyc, "executor": {"name": "ray", "node": "b" * 56}},
               {"id": "s0/f100/ibit", "machine": epyc, "executor": {"name": "ray", "node": "b" * 56}},
               {"id": "s1/f100/ibit", "machine": {"cpu": "Intel Xeon"}, "executor": {"name": "ray", "node": "a" * 56}},
               {"id": "s1/f100/vit", "machine": epyc, "executor": {"name": "local", "node": None}},
               {"id": "s2/f100/vit"}]
    assert ray_node_lines(results) == [f"- Ray node {'a' * 12}: s1/f100/ibit (Intel Xeon)",
                                       f"- Ray node {'b' * 12}: s0/f100/ibit, s0/f100/vit (AMD EPYC)"]
    assert ray_node_lines(results[3:]) == []
