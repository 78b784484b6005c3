"""Preparing the real bindings: pip failures become a clear reason, the stub covers what the extension needs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ibit_deploy.conformance import bindings


def test_unreachable_index_is_a_clear_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no network: pip may only look in an empty directory
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(bindings.BindingsUnavailable, match=r"pip could not fetch tensorrt-cu12-bindings==10\.3\.0"):
        bindings.ensure_bindings("10.3", cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "bindings-10.3.0").exists()  # nothing half-installed is left as cached


@pytest.mark.skipif(not (shutil.which("gcc") or shutil.which("cc")) or not shutil.which("nm"),
                    reason="needs a C compiler and nm")
def test_stub_defines_the_entry_points_and_refuses_unknown_needs(tmp_path):
    stub = bindings.ensure_stub(10, cache=tmp_path)
    for lib in bindings.LIBRARIES:
        defined = subprocess.run(["nm", "-D", "--defined-only", str(stub / f"lib{lib}.so.10")], capture_output=True,
                                 text=True, check=True).stdout
        assert all(symbol in defined for symbol in bindings.STUB_SYMBOLS)
    source = tmp_path / "ext.c"
    source.write_text("void *createInferBuilder_INTERNAL(void*, int);\nvoid *createNewThing_INTERNAL(void);\n"
                      "void *f(void) { createInferBuilder_INTERNAL(0, 0); return createNewThing_INTERNAL(); }\n")
    ext = tmp_path / "ext.so"
    subprocess.run([shutil.which("gcc") or "cc", "-shared", "-fPIC", "-o", str(ext), str(source)], check=True)
    assert bindings.undefined_library_symbols(ext) == ["createInferBuilder_INTERNAL", "createNewThing_INTERNAL"]
    with pytest.raises(bindings.BindingsUnavailable, match="createNewThing_INTERNAL"):
        bindings.ensure_stub(10, ext, cache=tmp_path)
