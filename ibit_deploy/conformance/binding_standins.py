"""A ``tensorrt`` module generated from the real bindings, checking every use against them (conformance subprocess).

Every attribute the project reads from ``tensorrt`` resolves against the real module of that TensorRT version:
enums return the real members, classes become stand-in classes whose constructors, methods and properties check
their arguments against the signatures pybind11 wrote into the real ``__doc__`` (every overload), and return values
built from the documented return type (a real ``Dims``, a real enum member, a stand-in of the returned class, an
int ...) unless a scenario supplies one, which is itself checked against that type. A name the version lacks, or
arguments that bind to no overload, are recorded with the caller's file and line and raise what the real bindings
would raise (AttributeError, TypeError), so the code path meets the same failure it would meet on the device.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.machinery
import inspect
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .signatures import check_value, parse_signatures, split_generic, strip_module

_MISSING = object()
_HERE = {str(Path(__file__).resolve()), str(Path(__file__).with_name("signatures.py").resolve())}
_MODULE_PREFIXES = ("tensorrt_bindings.tensorrt", "tensorrt_bindings", "tensorrt.tensorrt", "tensorrt")


class ScenarioError(RuntimeError):
    """A scenario value does not match the real return type: a bug in the conformance target, not the project."""


@dataclasses.dataclass
class Recorder:
    """Collects uses (TensorRT name -> caller sites) and findings (what does not conform)."""

    root: Path | None = None
    uses: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    findings: list[dict[str, str]] = dataclasses.field(default_factory=list)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    def site(self) -> str:
        """``file:line`` of the nearest caller outside this checker."""
        frame = sys._getframe(1)
        while frame is not None and str(Path(frame.f_code.co_filename).resolve()) in _HERE:
            frame = frame.f_back
        if frame is None:
            return "?"
        path = Path(frame.f_code.co_filename).resolve()
        if self.root is not None:
            try:
                path = path.relative_to(self.root)
            except ValueError:
                pass
        return f"{path.as_posix()}:{frame.f_lineno}"

    def use(self, name: str) -> None:
        self.uses.setdefault(name, set()).add(self.site())

    def finding(self, kind: str, name: str, detail: str) -> None:
        self.findings.append({"kind": kind, "name": name, "site": self.site(), "detail": detail})


class StandInTensorRT(types.ModuleType):
    """The module installed as ``tensorrt``: names resolve against ``real`` (the real bindings) and are checked."""

    def __init__(self, real: types.ModuleType, recorder: Recorder,
                 scenario: dict[str, Any] | None = None) -> None:
        super().__init__("tensorrt", f"stand-in generated from the real TensorRT {real.__version__} bindings")
        self._real = real
        self._impl = getattr(real, "tensorrt", real)  # the compiled submodule, where type names resolve
        self._recorder = recorder
        self._scenario: dict[str, Any] = dict(scenario or {})
        self._classes: dict[type, type] = {}
        # importlib.util.find_spec("tensorrt") (availability checks) needs a spec
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None, origin=getattr(real, "__file__", None))

    # The scenario is swapped per code path, so drivers can make the same method return other values.
    def set_scenario(self, scenario: dict[str, Any]) -> None:
        self._scenario = dict(scenario)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name != "__version__":
            raise AttributeError(name)
        value = getattr(self._real, name, _MISSING)
        if value is _MISSING:
            self._recorder.finding("missing", name, f"module tensorrt {self._real.__version__} has no attribute "
                                                    f"{name!r}")
            raise AttributeError(f"module 'tensorrt' has no attribute {name!r}")
        self._recorder.use(name)
        return self._wrap(name, value)

    # ------------------------------------------------------------------------------------------------ wrapping

    def _wrap(self, qual: str, value: Any) -> Any:
        if isinstance(value, type) and hasattr(value, "__members__"):
            return EnumProxy(self, qual, value)
        if isinstance(value, type) and type(value).__name__ == "pybind11_type":
            return self.standin_class(value)
        if inspect.isfunction(value):  # pure Python helpers of the bindings' __init__ (nptype, ...)
            return self._python_function(qual, value)
        if callable(value) and type(value).__name__ == "builtin_function_or_method":
            return functools.partial(self.call, qual, value.__doc__, qual.split(".")[-1], ())
        return value

    def _python_function(self, qual: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)

        def checked(*args: Any, **kwargs: Any) -> Any:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                self._recorder.finding("bad_arguments", qual, f"{qual}{signature}: {exc}")
                raise
            return fn(*args, **kwargs)

        return checked

    def standin_class(self, real_cls: type) -> type:
        """The stand-in class for ``real_cls`` (one per real class)."""
        if real_cls in self._classes:
            return self._classes[real_cls]
        module = self
        qual = real_cls.__name__

        def __init__(inst: Any, *args: Any, **kwargs: Any) -> None:
            module.call(f"{qual}.__init__", real_cls.__init__.__doc__, "__init__", (inst,), *args, **kwargs)

        namespace: dict[str, Any] = {"_real": real_cls, "_module": module, "__init__": __init__,
                                     "__module__": "tensorrt", "_generated": True}
        for dunder in ("__len__", "__getitem__", "__iter__", "__enter__", "__exit__"):
            if dunder in vars(real_cls):
                namespace[dunder] = _dunder(dunder)
        if "buffer protocol" in (real_cls.__doc__ or ""):
            namespace["__bytes__"] = lambda inst: b"\0" * 16  # the real object exposes its bytes as a buffer
        cls = _StandInMeta(qual, (StandIn,), namespace)
        self._classes[real_cls] = cls
        return cls

    def resolve_type(self, name: str) -> Any:
        """The real class or enum named ``name`` (``ILogger.Severity`` ...), or None."""
        name = strip_module(name, _MODULE_PREFIXES)
        if "::" in name:  # a C++ name the docstring kept (nvonnxparser::IParserError): the Python class drops the I
            cpp = name.rsplit("::", 1)[1]
            name = cpp if hasattr(self._impl, cpp) else cpp.removeprefix("I")
        obj: Any = self._impl
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj if isinstance(obj, type) else None

    def is_instance(self, value: Any, cls: type) -> bool:
        if isinstance(value, StandIn):
            return issubclass(type(value)._real, cls)
        return isinstance(value, cls)

    # --------------------------------------------------------------------------------------------- checking

    def call(self, qual: str, doc: str | None, name: str, bound_self: tuple[Any, ...], *args: Any,
             **kwargs: Any) -> Any:
        """Check a call of ``qual`` against the overloads in ``doc``; return the scenario's or a typed value."""
        self._recorder.use(qual)
        signatures = parse_signatures(doc, name)
        if not signatures:
            if name == "__init__":
                self._recorder.finding("no_constructor", qual, f"{qual.rsplit('.', 1)[0]} has no Python constructor")
                raise TypeError(f"{qual.rsplit('.', 1)[0]}: No constructor defined!")
            self._recorder.notes[qual] = "signature not in the docstring: arguments not checked"
            return self._value(qual, "object", args, kwargs)
        reasons = []
        for sig in signatures:
            bound = sig.bind(bound_self + args, kwargs)
            if isinstance(bound, str):
                reasons.append(f"{sig.text}: {bound}")
                continue
            errors = []
            for param in sig.params:
                if param.name in bound and param.kind not in ("var_positional", "var_keyword") \
                        and (param.name != "self" or not bound_self):
                    err = check_value(bound[param.name], strip_module(param.type, _MODULE_PREFIXES),
                                      self.resolve_type, self.is_instance)
                    if err:
                        errors.append(f"{param.name}: {err}")
            if errors:
                reasons.append(f"{sig.text}: " + "; ".join(errors))
                continue
            return self._value(qual, sig.returns, args, kwargs)
        kind = "bad_type" if all("expected" in r for r in reasons) else "bad_arguments"
        self._recorder.finding(kind, qual, " | ".join(reasons))
        raise TypeError(f"{qual}(): incompatible function arguments. " + " | ".join(reasons))

    def _value(self, qual: str, returns: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        returns = strip_module(returns, _MODULE_PREFIXES)
        if qual in self._scenario:
            given = self._scenario[qual]
            value = given(*args, **kwargs) if callable(given) and not isinstance(given, type) else given
            value = self._coerce(value, returns)
            err = check_value(value, returns, self.resolve_type, self.is_instance)
            if err:
                raise ScenarioError(f"scenario value for {qual} does not match its real return type {returns}: {err}")
            return value
        return self.make_value(returns)

    def _coerce(self, value: Any, returns: str) -> Any:
        """Scenario shorthand: a tuple of ints for a Dims, a list of those for List[Dims]."""
        head, inner = split_generic(returns)
        if head.startswith("Dims") and isinstance(value, (tuple, list)):
            return self.resolve_type(head)(list(value))
        if head in ("List", "list") and inner and isinstance(value, list):
            return [self._coerce(v, inner[0]) for v in value]
        if head == "Optional" and value is not None:
            return self._coerce(value, inner[0])
        return value

    def make_value(self, returns: str) -> Any:
        """A value of the documented return type."""
        head, inner = split_generic(strip_module(returns, _MODULE_PREFIXES))
        simple = {"None": None, "int": 1, "SupportsInt": 1, "float": 1.0, "bool": True, "str": "standin",
                  "bytes": b"\0", "buffer": b"\0", "object": None}
        if head in simple:
            return simple[head]
        if head == "Optional":
            return self.make_value(inner[0])
        if head in ("List", "list"):
            return [self.make_value(inner[0])] if inner else []
        if head in ("Tuple", "tuple"):
            return tuple(self.make_value(t) for t in inner)
        if head in ("numpy.ndarray", "ndarray"):
            import numpy as np

            return np.zeros(1, dtype=np.float32)
        cls = self.resolve_type(head)
        if cls is None:
            self._recorder.notes[returns] = "return type not modelled: None returned"
            return None
        if hasattr(cls, "__members__"):
            members = list(cls.__members__.values())
            return next((m for m in members if int(m) == 0), members[0])
        if head.startswith("Dims"):
            return cls([1])
        return object.__new__(self.standin_class(cls))


class EnumProxy:
    """A real pybind11 enum seen through the checker: members are the real members, missing ones are findings."""

    def __init__(self, module: StandInTensorRT, qual: str, real: type) -> None:
        self._module, self._qual, self._enum = module, qual, real

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._enum, name, _MISSING)
        recorder = self._module._recorder
        if value is _MISSING:
            recorder.finding("missing", f"{self._qual}.{name}",
                             f"{self._qual} has no member {name!r} in TensorRT {self._module._real.__version__} "
                             f"(members: {', '.join(self._enum.__members__)})")
            raise AttributeError(f"type object '{self._qual}' has no attribute {name!r}")
        recorder.use(f"{self._qual}.{name}")
        return value

    def __call__(self, *args: Any) -> Any:
        self._module._recorder.use(f"{self._qual}()")
        return self._enum(*args)

    def __iter__(self) -> Any:
        return iter(self._enum.__members__.values())

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self._enum)


class _StandInMeta(type):
    """Class-level attribute reads (nested enums, enum aliases such as ``Logger.WARNING``, unbound methods)."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        real, module = cls._real, cls._module  # found on the class or the generated base of a Python subclass
        qual = f"{real.__name__}.{name}"
        value = getattr(real, name, _MISSING)
        if value is _MISSING:
            module._recorder.finding("missing", qual, f"{real.__name__} has no attribute {name!r} in TensorRT "
                                                      f"{module._real.__version__}")
            raise AttributeError(f"type object '{real.__name__}' has no attribute {name!r}")
        if isinstance(value, type) and hasattr(value, "__members__"):
            module._recorder.use(qual)
            return EnumProxy(module, qual, value)
        if isinstance(value, type):
            module._recorder.use(qual)
            return module.standin_class(value)
        module._recorder.use(qual)
        if callable(value) and not isinstance(value, property) and not hasattr(type(value), "__members__"):
            doc = value.__doc__
            return lambda inst, *a, **k: module.call(qual, doc, name, (inst,), *a, **k)
        return value


class StandIn(metaclass=_StandInMeta):
    """Base of the generated classes: instance attribute reads and writes are checked against the real class."""

    _real: type = object
    _module: StandInTensorRT

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        module, real = type(self)._module, type(self)._real
        qual = f"{real.__name__}.{name}"
        props = self.__dict__.get("_standin_props", {})
        if name in props:
            module._recorder.use(qual)
            return props[name]
        value = getattr(real, name, _MISSING)
        if value is _MISSING:
            module._recorder.finding("missing", qual, f"{real.__name__} has no attribute {name!r} in TensorRT "
                                                      f"{module._real.__version__}")
            raise AttributeError(f"'{real.__name__}' object has no attribute {name!r}")
        if isinstance(value, property):
            module._recorder.use(qual)
            sigs = parse_signatures(value.fget.__doc__ if value.fget else None)
            return module._value(qual, sigs[0].returns if sigs else "object", (), {})
        if callable(value) and type(value).__name__ in ("instancemethod", "builtin_function_or_method",
                                                        "method_descriptor", "function"):
            doc = value.__doc__
            return functools.partial(module.call, qual, doc, name, (self,))
        module._recorder.use(qual)
        return module._wrap(qual, value) if isinstance(value, type) else value

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        real = cls._real
        attr = getattr(real, name, _MISSING)
        if attr is _MISSING and (name.startswith("_") or "_generated" not in cls.__dict__):
            object.__setattr__(self, name, value)  # a Python subclass's own attribute (e.g. a logger's list)
            return
        module = cls._module
        qual = f"{real.__name__}.{name}"
        if not isinstance(attr, property):
            module._recorder.finding("missing" if attr is _MISSING else "not_settable", qual,
                                     f"{real.__name__}.{name} is not a settable property in TensorRT "
                                     f"{module._real.__version__}")
            raise AttributeError(f"can't set attribute {name!r} of {real.__name__}")
        module._recorder.use(qual)
        if attr.fset is None:
            module._recorder.finding("not_settable", qual, f"{qual} is read-only")
            raise AttributeError(f"property {name!r} of {real.__name__} object has no setter")
        sigs = parse_signatures(attr.fset.__doc__)
        if sigs and len(sigs[0].params) == 2:
            err = check_value(value, strip_module(sigs[0].params[1].type, _MODULE_PREFIXES), module.resolve_type,
                              module.is_instance)
            if err:
                module._recorder.finding("bad_type", qual, f"{qual} = {value!r:.60}: {err}")
                raise TypeError(f"{qual}: incompatible value: {err}")
        self.__dict__.setdefault("_standin_props", {})[name] = value


def _dunder(name: str) -> Callable[..., Any]:
    def method(inst: Any, *args: Any) -> Any:
        real = type(inst)._real
        return type(inst)._module.call(f"{real.__name__}.{name}", getattr(real, name).__doc__, name, (inst,), *args)

    return method
