"""TensorRT from the full package: what needs more than the device kit.

``build`` wraps :mod:`ibit_deploy.devicekit`'s engine build and check with the package's conventions (lazy imports,
:class:`~ibit_deploy.errors.BackendUnavailable`, seams for tests); ``shell_template`` is the text of
``build_engine.sh``. The TensorRT rules themselves (versions, trtexec command lines, build, run, verification, the
acceptance table) live in :mod:`ibit_deploy.devicekit`, which every bundle carries.
"""
