"""Job parameters checked on the submitting machine, before anything is submitted or signed.

``jobruntime submit`` reads parameters from ``--params-file FILE`` (a JSON object) and
``--param NAME=VALUE`` (later wins); a VALUE that parses as JSON is that JSON value (a
number, ``true``, a list, an object), anything else is the text itself. They are then
validated with the job module's own ``Params`` model, exactly as the driver will:

- the module is executed as the driver executes it, under a throwaway name, but its
  ``run()`` is never called, so no SparkSession starts (jobs import pyspark inside
  ``run()``);
- a parameter ``Params`` does not declare is refused (``job.params_unknown``), so a
  misspelled name is not silently replaced by a default the owners never meant to
  approve; a value that does not fit is refused (``job.params``).

Messages name parameters and the model's reasons only, never a value: values may be
secrets (a hash key) or data.
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobruntime.errors import ConfigError
from jobruntime.job.errors import ModuleLoadError, ParamsError, UnknownParamError

MAX_PARAMS_FILE = 1 << 20


def _no_constants(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are text, not floats JSON cannot carry


def parse_value(text: str) -> Any:
    """A ``--param`` VALUE: the JSON value if it parses as JSON, else the text itself."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text


def read_params_file(path: Path) -> dict[str, Any]:
    """``--params-file``: one JSON object of parameters."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PARAMS_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read --params-file {path}: {exc.strerror}") from None
    if len(raw) > MAX_PARAMS_FILE:
        raise ConfigError(f"--params-file {path} is over {MAX_PARAMS_FILE} bytes")
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except ValueError as exc:
        # Position only: the text may hold secret values.
        pos = getattr(exc, "pos", None)
        where = f" at byte {pos}" if isinstance(pos, int) else ""
        raise ConfigError(f"--params-file {path} is not JSON{where}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--params-file {path} must hold a JSON object of NAME: VALUE")
    return value


def _load_module(path: Path) -> types.ModuleType:
    """Execute the module's top level (never ``run()``) under a name used once."""
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read job module {path}: {exc.strerror}") from None
    name = f"_jobruntime_params_check_{hashlib.sha256(source).hexdigest()[:16]}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    # pydantic resolves the model's postponed annotations through sys.modules.
    sys.modules[name] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - the submitter's own file
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ModuleLoadError(f"{path} failed to import ({type(exc).__name__})") from None
    return module


def known_names(model: Any) -> set[str]:
    names: set[str] = set()
    for field_name, info in model.model_fields.items():
        names.add(field_name)
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                names.add(alias)
    return names


def _show(name: str) -> str:
    return repr(name if len(name) <= 64 else name[:64] + "…")


def check(path: Path, values: Mapping[str, Any]) -> None:
    """Refuse parameters the spec cannot carry or the module's ``Params`` does not accept."""
    from pydantic import BaseModel, TypeAdapter, ValidationError

    from jobruntime.spec import rules
    from jobruntime.spec.codec import describe
    from jobruntime.spec.models import Name, ParamValue

    if len(values) > rules.MAX_PARAMETERS:
        raise ParamsError(f"{len(values)} parameters, at most {rules.MAX_PARAMETERS}")
    names, spec_value = TypeAdapter(Name), TypeAdapter(ParamValue)
    for key, value in values.items():
        try:
            names.validate_python(key)
        except ValidationError:
            raise ParamsError(f"parameter name {_show(key)} is not a valid name") from None
        try:
            spec_value.validate_python(value)
        except ValidationError:
            raise ParamsError(
                f"parameter {_show(key)}: a spec carries a boolean, a number within +-2^53, "
                "a text or a list of those"
            ) from None
    module = _load_module(path)
    try:
        model = getattr(module, "Params", None)
        if model is None:
            return  # no model: the job receives the parameters as a dict, unchecked
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ModuleLoadError(f"{path}: Params is not a pydantic model")
        unknown = sorted(set(values) - known_names(model))
        if unknown:
            known = ", ".join(sorted(model.model_fields)) or "none"
            raise UnknownParamError(
                f"unknown parameter {', '.join(_show(k) for k in unknown)} for {path.name} "
                f"(its Params declares: {known})"
            )
        try:
            model.model_validate(dict(values))
        except ValidationError as exc:
            raise ParamsError(
                f"parameters do not fit {path.name} Params: {describe(exc)}"
            ) from None
    finally:
        sys.modules.pop(module.__name__, None)
