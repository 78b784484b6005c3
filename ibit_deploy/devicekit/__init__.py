"""The bundle format and the device kit, in one package that imports only itself, the standard library, numpy and
(lazily) onnxruntime, tensorrt and cuda-python. Every bundle carries a verbatim copy (``BUNDLE/devicekit/``), run
through ``build_engine.py`` (:mod:`.launcher`), so the device runs the same code as ``ibit-export``.

    layout          the bundle's file names and precisions
    fileio          atomic writes, bounded JSON reading, sha256
    staging         a folder built aside and swapped in whole
    locking         one writer at a time per bundle
    agreement       the one logit comparison (names and units)
    profile         the manifest's input block: InputSpec, EngineProfile
    acceptance      the engine acceptance table and every artifact's recorded verdict
    manifest        THE manifest reader and writer (v1 migration, file checks, precision -> ONNX lookup)
    bundle          typed, read-only views of a bundle (Bundle, Artifact)
    session         running an engine (EngineSession, CUDA helpers)
    versions        THE version matrix: JetPack -> TensorRT -> CUDA -> features the kit may use
    build_limits    builder limits (workspace, optimization level, aux streams, tactic sources) per device class
    build_memory    peak host and device memory of a build
    timing_cache    timing caches keyed by GPU and TensorRT version (a mismatch is set aside, never an error)
    build           TensorRT version rules, trtexec command lines, the Python-API engine build
    attention_form  which ONNX form an engine is built from (the Attention op on TensorRT >= 10.14, else MatMul)
    verify          an engine's check against ONNX Runtime and its manifest entry
    precision_auto  the rules of ``--precision auto``; auto_build runs it
    trtexec_tool    finding trtexec and reading its output
    cli             the device command line (``python3 build_engine.py``)
    launcher        ``build_engine.py``: checks every kit file's sha256, then runs cli
"""
