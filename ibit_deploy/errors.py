"""Exceptions every layer raises and catches; the ground floor, so any module may import them."""

from __future__ import annotations


class BackendUnavailable(RuntimeError):
    """This backend cannot run on this machine (missing package, no GPU, ...); the message says why."""


class ExportFailed(RuntimeError):
    """The export finished but an artifact failed its check; the manifest records which and why."""
