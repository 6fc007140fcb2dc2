"""Load the job module from exactly the bytes whose digest was just checked.

Reading once, hashing those bytes and executing those same bytes closes the gap
between "verified" and "imported": an edit after verification is caught here,
and an edit between the check and the import cannot happen.

The module lives only in this process, under its spec's import name, so Spark's
Python workers could not import it: it is registered with PySpark's cloudpickle to be
pickled by value, which ships a module-level UDF (and whatever module-level names it
uses) inside the task instead of as a reference to ``jobs.<name>``.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from jobruntime.errors import ModuleDigestError
from jobruntime.job.errors import ModuleLoadError, ParamsError, UnknownParamError
from jobruntime.job.params import known_names
from jobruntime.spec.codec import describe
from jobruntime.spec.models import JobModule


def load(path: Path, pinned: JobModule) -> types.ModuleType:
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise ModuleDigestError(f"cannot read job module {path}: {exc.strerror}") from None
    actual = hashlib.sha256(source).hexdigest()
    if not hmac.compare_digest(actual, pinned.sha256):
        raise ModuleDigestError(
            f"{path} changed after verification: SHA-256 {actual[:16]}…, "
            f"the spec pins {pinned.sha256[:16]}…"
        )
    module = types.ModuleType(pinned.import_name)
    module.__file__ = str(path)
    try:
        code = compile(source, str(path), "exec")
        sys.modules[pinned.import_name] = module
        exec(code, module.__dict__)  # noqa: S102 - the bytes pinned by the signed spec
    except Exception as exc:
        raise ModuleLoadError(
            f"{pinned.import_name} failed to import ({type(exc).__name__})"
        ) from None
    pickle_by_value(module)
    return module


def pickle_by_value(module: types.ModuleType) -> None:
    """Ship the module's functions to Spark's workers by value: they cannot import it.

    Without this, a UDF defined at module level (or one calling a module-level helper)
    is pickled as a reference to the module, and pickling fails on the driver
    (``PicklingError``) or unpickling on the workers (``ModuleNotFoundError``).
    """
    from pyspark import cloudpickle  # PySpark's own copy: the one its serializer uses

    cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]


def entry(module: types.ModuleType, name: str) -> Callable[[Any], Any]:
    function = getattr(module, name, None)
    if not callable(function):
        raise ModuleLoadError(f"{module.__name__} has no callable {name}(ctx)")
    return function  # type: ignore[no-any-return]


def params(module: types.ModuleType, values: dict[str, Any]) -> Any:
    """The module's ``Params`` model validated against the spec, or the raw values."""
    model = getattr(module, "Params", None)
    if model is None:
        return dict(values)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ModuleLoadError(f"{module.__name__}.Params is not a pydantic model")
    unknown = sorted(set(values) - known_names(model))
    if unknown:  # a misspelled name must not run on a default nobody approved
        raise UnknownParamError(
            f"unknown parameter {', '.join(map(repr, unknown))} for {module.__name__}.Params"
        )
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ParamsError(
            f"parameters do not fit {module.__name__}.Params: {describe(exc)}"
        ) from None


def log_fields(module: types.ModuleType) -> tuple[str, ...]:
    """Field names the module lets ``ctx.log`` show (``LOG_FIELDS``, approved with its digest)."""
    declared = getattr(module, "LOG_FIELDS", ())
    if not isinstance(declared, tuple | list | frozenset | set) or not all(
        isinstance(f, str) for f in declared
    ):
        raise ModuleLoadError(f"{module.__name__}.LOG_FIELDS is not a sequence of names")
    return tuple(declared)
