"""Build a bundle beside its target and swap it in whole, so a failed or killed export leaves the previous bundle
exactly as it was.

    <parent>/.<name>.export-<pid>-<random>/    the bundle being built; removed if the export fails
    <parent>/.<name>.replaced-<pid>-<random>/  the previous bundle, only for the instant of a two-rename swap

The swap is one ``renameat2(RENAME_EXCHANGE)`` where Linux offers it (readers see the old bundle or the new one,
never none); elsewhere the previous bundle is renamed aside and the new one into place. Callers hold the target's
:func:`~ibit_deploy.devicekit.locking.directory_lock` (its lock file lies beside the target, so it survives the swap); under
it, any staging or replaced directory of the same target is a leftover of a dead export, which
:func:`clean_leftovers` removes (putting a replaced bundle back if the swap itself was interrupted).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

STAGING = "export"
REPLACED = "replaced"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-"


def _is_leftover(name: str, target: Path, kind: str) -> bool:
    """Whether ``name`` is a ``kind`` directory of ``target`` (and not one of a bundle whose name merely starts so)."""
    return re.fullmatch(re.escape(_prefix(target, kind)) + r"\d+-[A-Za-z0-9_]+", name) is not None


def new_staging(target: str | os.PathLike) -> Path:
    """A new, empty staging directory beside ``target`` (same file system, so the swap is a rename)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{_prefix(target, STAGING)}{os.getpid()}-", dir=target.parent))


def clean_leftovers(target: str | os.PathLike) -> list[str]:
    """Remove what dead exports left beside ``target`` (call it holding the target's lock); returns what was done."""
    target = Path(target)
    done: list[str] = []
    try:
        entries = sorted(target.parent.iterdir())
    except OSError:
        return done
    replaced = [p for p in entries if _is_leftover(p.name, target, REPLACED) and p.is_dir()]
    if replaced and not os.path.lexists(target):  # killed between the two renames of a swap: the old bundle returns
        os.rename(replaced[0], target)
        done.append(f"restored {target} from {replaced[0].name} (an export was killed while swapping it)")
        replaced = replaced[1:]
    for path in [p for p in entries if _is_leftover(p.name, target, STAGING) and p.is_dir()] + replaced:
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"removed {path} (left by an export that did not finish)")
    return done


def swap_in(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the complete bundle ``staging`` in place of ``target`` (a bundle, an empty directory, or nothing).

    ``staging`` first gets the mode of the folder it replaces, or, for a new one, the mode the umask gives.
    """
    staging, target = Path(staging), Path(target)
    settle_mode(staging, target)
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging)  # it now holds the previous bundle
        return
    aside = target.parent / f"{_prefix(target, REPLACED)}{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(aside, target)
        raise
    shutil.rmtree(aside)


def publish_new(staging: str | os.PathLike, target: str | os.PathLike) -> bool:
    """Rename the complete folder ``staging`` to ``target`` if nothing is there yet (True); if another process got
    there first, discard ``staging`` and keep theirs (False). For caches that any process may fill."""
    staging, target = Path(staging), Path(target)
    try:
        if not os.path.lexists(target):
            os.rename(staging, target)
            return True
    except OSError as exc:
        if not os.path.lexists(target) or exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            shutil.rmtree(staging, ignore_errors=True)
            raise
    shutil.rmtree(staging, ignore_errors=True)
    return False


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2``); False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def settle_mode(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Give ``staging`` (made 0700 by mkdtemp) the mode of the folder ``target`` it will replace, or the mode a new
    folder gets under the umask when there is none."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode) if Path(target).is_dir() else None
    except OSError:
        mode = None
    if mode is None:
        mask = os.umask(0)
        os.umask(mask)
        mode = 0o777 & ~mask
    os.chmod(staging, mode)


class StagedFolder:
    """A folder being written aside (``path``) for :func:`staged_folder`; ``publish_on_interrupt`` says whether a
    Ctrl-C still swaps it in (e.g. a partial report where no complete one would be replaced)."""

    def __init__(self, path: Path, target: Path) -> None:
        self.path = path
        self.target = target
        self.publish_on_interrupt = False


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, purpose: str, *, wait: bool = False,
                  say: Callable[[str], None] | None = None) -> Iterator[StagedFolder]:
    """Write a folder aside and swap it in place of ``target`` when the ``with`` block completes.

    Holds ``target``'s lock (:func:`~ibit_deploy.devicekit.locking.directory_lock`) throughout, removes what dead writers
    left beside it (:func:`clean_leftovers`), and discards the staged folder on any exception; a Ctrl-C swaps it in
    only if the block set ``publish_on_interrupt``. Check the target with :func:`ibit_deploy.outputs.check_output`
    first (this swaps in whatever is there).
    """
    from .locking import directory_lock

    target = Path(target)
    with directory_lock(target, purpose, wait=wait, message=say):
        for note in clean_leftovers(target):
            (say or (lambda text: None))(note)
        staged = StagedFolder(new_staging(target), target)
        try:
            yield staged
        except KeyboardInterrupt:
            if staged.publish_on_interrupt:
                swap_in(staged.path, target)
            else:
                shutil.rmtree(staged.path, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(staged.path, ignore_errors=True)
            raise
        swap_in(staged.path, target)
