"""Exceptions every layer raises and catches; the ground floor, so any module may import them."""

from __future__ import annotations


class BackendUnavailable(RuntimeError):
    """This backend cannot run on this machine (missing package, no GPU, ...); the message says why."""


class ExportFailed(RuntimeError):
    """The export finished but an artifact failed its check; the manifest records which and why."""


class GateFailed(ExportFailed):
    """The bundle and its manifest were written, but an artifact failed its accuracy gate or check (the manifest
    marks it); ``manifest`` is what was written."""

    def __init__(self, message: str, manifest: dict) -> None:
        super().__init__(message)
        self.manifest = manifest
