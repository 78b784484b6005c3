"""The arguments several commands share, spelled the same everywhere; every command in ``ibit_deploy.cli`` builds
them here.

- the bundle is the first positional argument (``BUNDLE``);
- ``--precision P[,P...]``, ``--backends B[,B...]``, ``--device D``, ``--quiet``;
- every list is comma-separated (``--batches 1,8,32``, ``--weights 0.5,0.5``);
- accuracy budgets and margins are top-1 points on the command line (``--max-drop 1.0``), fractions in every record;
- every numeric option is checked for its range and finiteness when it is parsed (:func:`add_number`, the list types
  below; the rule is :class:`ibit_deploy.devicekit.numbers.Range`): a bad value is exit 2 naming the flag.

An old spelling (``--precisions``, ``--backend``, ``--torch-device``, ``--progress``, ``--bundle``, space-separated
lists) keeps working and prints a one-line deprecation note on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..devicekit.numbers import BATCH, Range, argtype

# one teacher's weight: finite and >= 0 (the weights must also have a positive sum)
WEIGHT = Range(0)


def deprecation_note(prog: str, old: str, new: str) -> None:
    """The one line an old spelling prints on stderr."""
    print(f"{prog}: note: {old} is deprecated; use {new}", file=sys.stderr)


def comma_list(text: str) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; an argparse type (an empty list is a usage error)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def add_number(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, rule: Range,
               **kwargs: Any) -> None:
    """A numeric option whose value must be in ``rule`` (finite, in range, whole where integer), checked when parsed:
    a bad value is a usage error (exit 2) naming ``flag``."""
    parser.add_argument(flag, type=argtype(rule, flag), **kwargs)


def _comma_numbers(text: str, rule: Range, what: str) -> list[int | float]:
    try:
        return [rule.check(t, what) for t in comma_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def comma_ints(text: str) -> list[int]:
    """Comma-separated batch sizes, each an integer >= 1 (:data:`ibit_deploy.devicekit.numbers.BATCH`)."""
    return [int(v) for v in _comma_numbers(text, BATCH, "each batch size")]


comma_ints.rule = BATCH  # type: ignore[attr-defined]


def comma_weights(text: str) -> list[float]:
    """Comma-separated weights (one per teacher): each finite and >= 0, with a positive sum."""
    values = [float(v) for v in _comma_numbers(text, WEIGHT, "each weight")]
    if sum(values) <= 0:
        raise argparse.ArgumentTypeError(f"the weights must have a positive sum, got {text!r}")
    return values


comma_weights.rule = WEIGHT  # type: ignore[attr-defined]


def numeric_options(parser: argparse.ArgumentParser) -> dict[str, Range]:
    """Every numeric option of ``parser`` (its first option string) and its range: options built by
    :func:`add_number`, the numeric list types, and any ``type`` carrying a ``rule``. Deprecated spellings are left
    out (they share the option's type)."""
    found = {}
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        rule = getattr(action.type, "rule", None) or getattr(getattr(action, "item", None), "rule", None)
        if rule is not None:
            found[action.option_strings[0]] = rule
    return found


def unchecked_numbers(parser: argparse.ArgumentParser) -> list[str]:
    """Options parsed with a bare ``int`` or ``float``: numbers no range checks (each should use :func:`add_number`)."""
    return [action.option_strings[0] if action.option_strings else action.dest for action in parser._actions
            if action.type in (int, float)]


class _Renamed(argparse.Action):
    """An old option string: parses like the new one into the same ``dest`` and prints the deprecation note."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, store: Callable[[Any], Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new, self.store = new, store

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        deprecation_note(parser.prog, option_string or self.option_strings[0], self.new)
        setattr(namespace, self.dest, self.store(values) if self.store else values)


def renamed(parser: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, new: str, dest: str,
            **kwargs: Any) -> None:
    """Keep ``old`` working as a deprecated spelling of ``new`` (same ``dest``; ``kwargs``: type, nargs, ...)."""
    parser.add_argument(old, dest=dest, action=_Renamed, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **kwargs)


class _CommaOrSpaces(argparse.Action):
    """A comma-separated list that still accepts the old space-separated form (``--w 0.5 0.5``) with a note."""

    def __init__(self, option_strings: Sequence[str], dest: str, item: Callable[[str], list[Any]],
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="+", **kwargs)
        self.item = item

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if len(values) > 1:
            deprecation_note(parser.prog, f"space-separated {option_string}", f"{option_string} {','.join(values)}")
        try:  # one list, however it was spelled (a rule on the whole list, e.g. a positive sum, sees all of it)
            items = self.item(",".join(values))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        setattr(namespace, self.dest, items)


def add_comma_list(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str,
                   item: Callable[[str], list[Any]] = comma_list, **kwargs: Any) -> None:
    """A comma-separated list option (``item`` parses one comma-separated text) that also takes the old
    space-separated form with a deprecation note."""
    parser.add_argument(flag, action=_CommaOrSpaces, item=item, **kwargs)


class _Bundle(argparse.Action):
    """The optional positional BUNDLE: left out, it keeps a value the old ``--bundle`` flag set."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is None and getattr(namespace, self.dest, None) is not None:
            return
        setattr(namespace, self.dest, values)


def add_bundle(parser: argparse.ArgumentParser, *, optional: bool = False, old_flag: str | None = None,
               help: str = "bundle directory written by ibit-export (with manifest.json)") -> None:
    """The bundle: the first positional argument (``optional``: may be left out). ``old_flag`` (e.g. ``--bundle``)
    keeps working with a note."""
    parser.add_argument("bundle", nargs="?" if optional else None, default=None, action=_Bundle, help=help)
    if old_flag:
        renamed(parser, old_flag, "the bundle as the first argument (BUNDLE)", dest="bundle")


def add_precision(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default: Any, help: str,
                  type: Callable[[str], Any] | None = None, old: Sequence[str] = (), metavar: str = "P[,P...]") -> None:
    """``--precision``: the artifact precision(s); ``old`` spellings (``--precisions``) keep working with a note."""
    parser.add_argument("--precision", default=default, type=type, metavar=metavar, help=help)
    for flag in old:
        renamed(parser, flag, "--precision", dest="precision", type=type)


def add_backends(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default: Any, help: str,
                 type: Callable[[str], Any] | None = comma_list, old: Sequence[str] = ()) -> None:
    """``--backends B[,B...]``; ``old`` spellings (``--backend``) keep working with a note."""
    parser.add_argument("--backends", default=default, type=type, metavar="B[,B...]", help=help)
    for flag in old:
        renamed(parser, flag, "--backends", dest="backends", type=type)


def add_device(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default: str | None,
               choices: Sequence[str] = ("auto", "cpu", "cuda"), help: str = "device to run PyTorch on",
               old: Sequence[str] = ()) -> None:
    """``--device``; ``old`` spellings (``--torch-device``) keep working with a note."""
    parser.add_argument("--device", default=default, choices=choices, help=help)
    for flag in old:
        renamed(parser, flag, "--device", dest="device", choices=choices)


class _Progress(argparse.Action):
    """The old ``--progress`` / ``--no-progress`` of ibit-train: ``--no-progress`` is ``--quiet``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        quiet = option_string == "--no-progress"
        deprecation_note(parser.prog, str(option_string), "--quiet" if quiet else "no flag (progress is the default)")
        setattr(namespace, self.dest, quiet)


def add_quiet(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default: bool | None = False,
              old_progress: bool = False) -> None:
    """``--quiet``: no progress bar or progress lines (``default`` None: not given, e.g. to keep a config file's
    setting). ``old_progress``: ``--progress`` / ``--no-progress`` keep working with a note."""
    parser.add_argument("--quiet", action="store_const", const=True, default=default,
                        help="no progress bar or progress lines")
    if old_progress:
        parser.add_argument("--progress", "--no-progress", dest="quiet", action=_Progress, nargs=0,
                            help=argparse.SUPPRESS, default=argparse.SUPPRESS)


def add_overwrite(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str) -> None:
    """``--overwrite``: replace an existing output of the command's own kind made from another source (the write
    policy, :func:`ibit_deploy.outputs.check_output`: never a checkpoint, a bundle, a source or anything else)."""
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace an existing {what} made from another source (never anything else)")
