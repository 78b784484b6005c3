#!/usr/bin/env python3
"""Build this bundle's TensorRT engine on the device: ``python3 build_engine.py [--precision auto] [--help]``.

The launcher of the device kit (``devicekit/`` beside it, a copy of the package ``ibit_deploy.devicekit``). Before any
kit code runs it checks every kit file against the sha256 manifest.json records for it: each file is read once, its
bytes hashed, and exactly those bytes are run (never a cached ``.pyc``, never a file changed after the check). A kit
file that is missing, altered or not listed, or a manifest that cannot be read, is refused with exit 2 and nothing
else happens. Standard library only, so the check itself depends on nothing it has not checked.

Exit codes: 0 done, 1 build or check failed, 2 bad arguments or bundle, 3 TensorRT or a GPU is not available.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

KIT_PACKAGE = "devicekit"
KIT_KIND = "kit"
MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
BAD_BUNDLE = 2  # exit_codes.BAD_INPUT (the launcher imports nothing unchecked; a test holds them equal)


class KitRefused(Exception):
    """The kit cannot be trusted or found; the message says which file and why."""


def verified_kit(bundle: Path) -> dict[str, tuple[str, bytes]]:
    """module name -> (file name, verified source bytes) of every kit module manifest.json lists."""
    manifest_path = bundle / MANIFEST_FILE
    try:
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise KitRefused(f"{manifest_path} is larger than {MAX_MANIFEST_BYTES} bytes")
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise KitRefused(f"cannot read {manifest_path}: {exc}") from None
    arts = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(arts, list):
        raise KitRefused(f"{manifest_path} has no list of artifacts")
    listed = {a.get("path"): a.get("sha256") for a in arts if isinstance(a, dict) and a.get("kind") == KIT_KIND}
    kit_dir = bundle / KIT_PACKAGE
    try:
        present = {f"{KIT_PACKAGE}/{p.name}" for p in kit_dir.iterdir() if p.name != "__pycache__"}
    except OSError as exc:
        raise KitRefused(f"the bundle's kit folder {kit_dir} cannot be read: {exc}") from None
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise KitRefused(f"{', '.join(unlisted)} in {bundle} is not listed in {MANIFEST_FILE}; refusing to run a kit "
                         f"with files the export did not write")
    sources: dict[str, tuple[str, bytes]] = {}
    for rel, digest in sorted(listed.items(), key=lambda item: str(item[0])):
        name = rel.split("/", 1)[1] if isinstance(rel, str) and rel.startswith(KIT_PACKAGE + "/") else ""
        if not name.endswith(".py") or "/" in name or not name[:-3].isidentifier() or not isinstance(digest, str):
            raise KitRefused(f"{MANIFEST_FILE} lists a kit file {rel!r} that is not {KIT_PACKAGE}/<module>.py")
        try:
            data = (bundle / rel).read_bytes()
        except OSError as exc:
            raise KitRefused(f"kit file {bundle / rel} cannot be read: {exc}") from None
        found = hashlib.sha256(data).hexdigest()
        if found != digest:
            raise KitRefused(f"{bundle / rel} was altered after export: sha256 {found[:12]}... does not match the "
                             f"manifest's {digest[:12]}...; refusing to run it")
        module = KIT_PACKAGE if name == "__init__.py" else f"{KIT_PACKAGE}.{name[:-3]}"
        sources[module] = (str(bundle / rel), data)
    if KIT_PACKAGE not in sources or f"{KIT_PACKAGE}.cli" not in sources:
        raise KitRefused(f"{MANIFEST_FILE} lists no complete kit ({KIT_PACKAGE}/__init__.py and cli.py)")
    return sources


class VerifiedSources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the kit's modules from the verified bytes, ahead of every other finder."""

    def __init__(self, sources: dict[str, tuple[str, bytes]]) -> None:
        self.sources = sources

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.sources:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=self.sources[fullname][0],
                                               is_package=fullname == KIT_PACKAGE)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        filename, data = self.sources[module.__name__]
        module.__file__ = filename
        exec(compile(data, filename, "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - verified bytes


def main(argv: list[str] | None = None) -> int:
    """Check the kit, then run its command line with this bundle as the default ``--bundle``."""
    bundle = Path(__file__).resolve().parent
    try:
        sources = verified_kit(bundle)
    except KitRefused as exc:
        print(f"build_engine.py: {exc}", file=sys.stderr)
        return BAD_BUNDLE
    sys.dont_write_bytecode = True
    sys.meta_path.insert(0, VerifiedSources(sources))
    kit_cli = importlib.import_module(f"{KIT_PACKAGE}.cli")
    return kit_cli.main(sys.argv[1:] if argv is None else argv, bundle=bundle)


if __name__ == "__main__":
    sys.exit(main())
