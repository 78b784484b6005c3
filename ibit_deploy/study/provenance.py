"""Where a study's runs came from: which CPUs trained them, on a Ray cluster which node finished each, and which
LIB-KD teachers were retrained from records.

A study continued over several sessions may run on different machines. Training is bit-exact on one thread of one
CPU, but another CPU's kernels (AVX2 vs AVX512, another vendor) round differently, so a teacher retrained there from
its record is not bit-identical to the recorded one. The report says so, with the retrained and recorded top-1, rather
than letting a student silently rest on other weights than the table's teacher row.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .records import as_points


def machines_line(results: list[dict[str, Any]]) -> str | None:
    """One sentence naming the CPUs the runs trained on (with counts); None when no run recorded its machine."""
    cpus = Counter(f"{m.get('cpu') or 'unknown'} ({m.get('torch_cpu_capability') or 'unknown'} kernels)"
                   for r in results if isinstance(m := r.get("machine"), dict))
    if not cpus:
        return None
    unrecorded = sum(1 for r in results if not isinstance(r.get("machine"), dict))
    text = "Machines: " + "; ".join(f"{n} run(s) on {cpu}" for cpu, n in cpus.most_common())
    if unrecorded:
        text += f"; {unrecorded} run(s) finished by a worker that did not record its machine"
    return text + "."


def ray_node_lines(results: list[dict[str, Any]]) -> list[str]:
    """One bullet per Ray node naming the runs it finished (the ``executor`` record of each result), with its CPU;
    none when no run ran on Ray. A node is named by its Ray node id (12 characters; ``ray list nodes`` maps ids to
    addresses while the cluster runs): results keep no host names, as they may be committed to a repository."""
    by_node: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        executor = r.get("executor")
        if isinstance(executor, dict) and executor.get("name") == "ray":
            by_node.setdefault(str(executor.get("node") or "unknown"), []).append(r)
    lines = []
    for node, runs in sorted(by_node.items()):
        cpus = sorted({str((r.get("machine") or {}).get("cpu") or "unknown CPU") for r in runs})
        lines.append(f"- Ray node {node[:12]}: {', '.join(sorted(r['id'] for r in runs))} ({'; '.join(cpus)})")
    return lines


def _teacher_text(record: dict[str, Any]) -> str:
    same = "bit-identical to" if record.get("identical") else "NOT bit-identical to"
    acc, recorded = record.get("val_acc1"), record.get("recorded_val_acc1")
    top1 = (f"top-1 {as_points(acc):.2f} retrained vs {as_points(recorded):.2f} recorded" if acc is not None and recorded is not None
            else "top-1 of the retrained teacher not recorded")
    return f"{record['teacher']} {same} its record ({top1})"


def restored_teachers_lines(results: list[dict[str, Any]]) -> list[str]:
    """One bullet per student whose teachers were retrained from their records (checkpoints gone)."""
    lines = []
    for r in sorted(results, key=lambda r: r["id"]):
        restored = r.get("teachers_restored") or []
        if restored:
            lines.append(f"- {r['id']}: retrained " + "; ".join(_teacher_text(t) for t in restored))
    return lines
