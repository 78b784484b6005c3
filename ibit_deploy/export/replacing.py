"""What an export may replace at its ``--out``, and what of the replaced bundle survives.

- nothing there, or an empty directory: a new bundle;
- a bundle of the same source checkpoint (its weights and config sha256): replaced, a re-export;
- a bundle of another checkpoint, or one whose manifest cannot be read: replaced only with ``overwrite``
  (``--overwrite``); its files all go with it;
- anything else (a file, a directory that is not a bundle): refused, since the whole directory is replaced.

What the replaced bundle holds that no export made (packages written into it by ``ibit-export --package`` or
``ibit-deploy package --out BUNDLE/...``, a user's files) is copied into the new bundle before the swap
(:func:`keep_foreign`, the write policy: a command replaces only what it made); ``ibit-export`` then regenerates the
kept packages from the new bundle. Bench results of the replaced bundle are carried over when what they measured is byte-identical in the new one
(:func:`~ibit_deploy.devicekit.manifest.carry_results`), with its ``bench/`` reports when all are; the rest are dropped and
the manifest's ``export.replaced`` record says which and why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..devicekit.fileio import is_atomic_temp
from ..devicekit.layout import BENCH_DIR, MANIFEST_FILE
from ..devicekit.manifest import carry_results, load_manifest
from ..outputs import PACKAGE_MANIFEST


def same_source(recorded: Any, fingerprint: dict[str, str] | None) -> bool:
    """Whether a bundle's recorded ``source`` is the checkpoint ``fingerprint`` (same weights and config bytes)."""
    if not isinstance(recorded, dict) or not fingerprint:
        return False
    return all(recorded.get(key) == fingerprint[key] for key in ("weights_sha256", "config_sha256"))


def previous_bundle(target: str | os.PathLike, fingerprint: dict[str, str] | None,
                    overwrite: bool) -> dict[str, Any] | None:
    """The manifest of the bundle an export into ``target`` will replace (``{}`` if unreadable), None if none.

    Raises (before anything is written) NotADirectoryError / FileExistsError when the export may not replace what
    is there; the message says why and what to do.
    """
    target = Path(target)
    if not os.path.lexists(target):
        return None
    if not target.is_dir():
        raise NotADirectoryError(f"--out {target} exists and is not a directory; give a bundle directory")
    held = sorted(p.name for p in target.iterdir() if not is_atomic_temp(p.name))
    if not held:
        return None
    if MANIFEST_FILE not in held:
        shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise FileExistsError(f"--out {target} is not empty ({shown}) and is not a bundle (no {MANIFEST_FILE}); an "
                              f"export replaces the whole directory, so give a new or empty one, or a bundle")
    try:
        old = load_manifest(target, verify=False)
    except (OSError, ValueError) as exc:
        if overwrite:
            return {}
        raise FileExistsError(f"{target} holds a bundle whose manifest cannot be read ({exc}); pass --overwrite to "
                              f"replace it") from None
    if not same_source(old.get("source"), fingerprint) and not overwrite:
        src = old.get("source") if isinstance(old.get("source"), dict) else {}
        raise FileExistsError(
            f"{target} holds a bundle exported from another checkpoint ({src.get('path', 'unknown path')}, weights "
            f"sha256 {str(src.get('weights_sha256'))[:12]}...); pass --overwrite to replace it (all its files and "
            f"its bench results go), or choose another --out")
    return old


def carry_over(old: dict[str, Any], target: Path, new: dict[str, Any], staging: Path) -> dict[str, Any]:
    """Move into ``new`` (being built in ``staging``) the results of ``old`` (the bundle in ``target``) that still
    hold, and its bench reports if all do; return the ``export.replaced`` record."""
    kept, dropped = carry_results(old, new)
    new["results"] = [*kept, *(new.get("results") or [])]
    reports = target / BENCH_DIR
    bench = None
    if reports.is_dir():
        if kept and not dropped:
            shutil.copytree(reports, staging / BENCH_DIR)
            bench = "carried over"
        else:
            bench = "dropped"
            inside = str(reports.resolve())
            for result in kept:  # their report file goes with the old bundle
                if str(result.get("report") or "").startswith(inside + os.sep):
                    result["report"] = None
    return {"source": old.get("source"), "same_source": same_source(old.get("source"), new.get("source")),
            "results_carried": len(kept), "results_dropped": dropped, "bench_reports": bench}


def _is_writers_leftover(name: str) -> bool:
    """Lock files, staging folders and temps that writers put beside their targets (never a user's file)."""
    return is_atomic_temp(name) or (name.startswith(".") and (name.endswith(".lock") or ".export-" in name or
                                                             ".replaced-" in name))


def keep_foreign(old: dict[str, Any], target: Path, staging: Path) -> tuple[list[str], list[str]]:
    """Copy into ``staging`` every entry of the replaced bundle ``target`` that no export made; returns (the
    entries kept, the package folders among them, as paths relative to the bundle).

    An export made the manifest, ``bench/`` (see :func:`carry_over`), every artifact the old manifest lists, and
    whatever the new bundle holds already (those names are the new export's).
    """
    made = {MANIFEST_FILE, BENCH_DIR, *os.listdir(staging)}
    for art in old.get("artifacts", []) if isinstance(old.get("artifacts"), list) else []:
        if isinstance(art, dict) and isinstance(art.get("path"), str) and art["path"]:
            made.add(Path(art["path"]).parts[0])
    kept: list[str] = []
    for entry in sorted(target.iterdir()):
        if entry.name in made or _is_writers_leftover(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, staging / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, staging / entry.name, follow_symlinks=False)
        kept.append(entry.name)
    packages = sorted(str(p.parent.relative_to(staging)) for name in kept
                      for p in ([staging / name / PACKAGE_MANIFEST] if (staging / name).is_dir() else [])
                      + (list((staging / name).glob(f"*/{PACKAGE_MANIFEST}")) if (staging / name).is_dir() else [])
                      if p.is_file())
    return kept, packages


def describe_replaced(record: dict[str, Any]) -> str:
    """One line for the user about what became of the replaced bundle's results."""
    what = "the previous bundle (same checkpoint)" if record.get("same_source") else \
        "the previous bundle (another checkpoint, --overwrite)"
    parts = [f"replaced {what}"]
    if record.get("results_carried"):
        parts.append(f"carried over {record['results_carried']} bench result(s) (artifacts byte-identical)")
    if record.get("results_dropped"):
        parts.append(f"dropped {len(record['results_dropped'])} bench result(s): "
                     + "; ".join(record["results_dropped"]))
    if record.get("bench_reports"):
        parts.append(f"{BENCH_DIR}/ reports {record['bench_reports']}")
    if record.get("kept"):
        parts.append(f"kept what the export did not make: {', '.join(record['kept'])}")
    return ", ".join(parts)
