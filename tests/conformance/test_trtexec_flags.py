"""Every trtexec command line the project generates uses only flags its TensorRT version documents."""

from __future__ import annotations

import pytest

from ibit_deploy.conformance.trtexec_flags import check_trtexec_argv, project_commands, script_commands
from ibit_deploy.conformance.trtexec_flags_table import TABLE


def test_project_commands_conform():
    commands = list(project_commands())
    assert {major for _, major, _ in commands} == {10, 11}
    assert sum("build_engine.sh" in label for label, _, _ in commands) == 15  # 5 functions x 3 precisions
    for label, major, argv in commands:
        assert check_trtexec_argv(argv, major) == [], label


def test_version_specific_flags_fail_on_the_other_version():
    by_label = {label: (major, argv) for label, major, argv in project_commands()}
    _, legacy = by_label["trtexec_command(10, fp16, legacy=True, benchmark=False)"]
    assert "--fp16: not a trtexec 11.x flag (exists in 10.x)" in check_trtexec_argv(legacy, 11)
    _, bench10 = by_label["trtexec_benchmark_command(10)"]
    assert any(p.startswith("--useCudaGraph: deprecated") for p in check_trtexec_argv(bench10, 11))
    _, typed10 = by_label["trtexec_command(10, fp32, legacy=False, benchmark=False)"]
    assert any(p.startswith("--stronglyTyped: deprecated") for p in check_trtexec_argv(typed10, 11))


@pytest.mark.parametrize(("arg", "message"), [
    ("--workspace=1024", "not a trtexec 10.x flag"),  # removed in 10 (now --memPoolSize)
    ("--memPoolSize=scratch:64M", "expected <pool>:<size>"),
    ("--profilingVerbosity=verbose", "expected one of"),
    ("--percentile=50,101", "percentiles in [0, 100]"),
    ("--shapes=images:8x3x224", None),
    ("--shapes=images", "name:NxCxHxW"),
    ("--saveEngine", "needs a value"),
    ("--skipInference=yes", "a switch"),
])
def test_planted_bad_arguments(arg, message):
    problems = check_trtexec_argv(["trtexec", "--onnx=m.onnx", arg], 10)
    assert (problems == []) if message is None else any(message in p for p in problems), problems


def test_unknown_version_is_refused_and_sources_are_named():
    with pytest.raises(ValueError, match=r"TensorRT 9\.x.*\[10, 11\]"):
        check_trtexec_argv(["trtexec"], 9)
    assert all("sampleOptions.cpp" in v["source"] for v in TABLE["versions"].values())


def test_script_parser_reads_rendered_functions_only():
    script = 'usage() { echo "x"; }\nbuild_10() {\n    "${TRTEXEC}" \\\n        "--onnx=${SOURCE}"\n}\nother() {\n    echo \'\n}\n'
    assert script_commands(script) == {"build_10": ["${TRTEXEC}", "--onnx=${SOURCE}"]}
