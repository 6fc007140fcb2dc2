"""A signed run verified against the pinned trust root: signature, then schema, then the rest.

Steps (numbered as the verifier reports them, see docs/verifier.md):

1. the envelope: size and depth limits on raw bytes, DSSE shape, payload type;
2. the control plane's signature over the exact payload (threshold of distinct keys);
3. only then the spec's schema (unknown fields refused);
4. each owner's approvals, each verified before its fields are read;
5. the validity window, with a bounded clock skew;
6. the run id the pod was started for.

:func:`verify_signed_run` parses the spec into the pydantic ``JobRunSpec``;
:func:`verify_signed_run_plain`, for the pod's sidecars, into a ``plain.PlainSpec``
with no pydantic. Both run the one sequence below, and the pydantic path applies the
plain check as well, so a spec the verifier accepts is one its sidecars accept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from jobruntime.errors import (
    ConfigError,
    EnvelopeError,
    RunIdMismatchError,
    SpecExpiredError,
    SpecNotYetValidError,
)
from jobruntime.signing import approvals, envelope
from jobruntime.signing.approvals import ApprovedSpec
from jobruntime.signing.envelope import Envelope
from jobruntime.signing.roots import CONTROL_PLANE, RootLike
from jobruntime.spec import plain
from jobruntime.spec.codec import MAX_SPEC_BYTES, load_json, parse_model, sha256_digest
from jobruntime.spec.plain import PlainSpec
from jobruntime.spec.rules import iso

if TYPE_CHECKING:
    from jobruntime.spec.models import JobRunSpec

MAX_CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_SKEW = timedelta(seconds=60)

_MINT = object()  # only this module can make a VerifiedSpec or a PlainVerifiedSpec

STEPS = (
    "1. envelope",
    "2. control-plane signature",
    "3. spec schema",
    "4. owner approvals",
    "5. validity window",
    "6. run id",
)


class _HasRunId(Protocol):
    @property
    def run_id(self) -> str: ...


_S = TypeVar("_S", bound=_HasRunId)


@dataclass(frozen=True)
class _Verified(Generic[_S]):
    """A spec whose control-plane signature (and, unless skipped, approvals) checked out;
    only this module's ``verify_signed_run*`` functions can make one."""

    spec: _S
    digest: str
    envelope: Envelope = field(repr=False)
    approvals: tuple[dict[str, Any], ...] = field(repr=False)
    verified_at: datetime
    checks: tuple[str, ...]
    _mint: object = field(repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self._mint is not _MINT:
            raise TypeError(f"a {type(self).__name__} comes only from verify_signed_run")

    @property
    def run_id(self) -> str:
        return self.spec.run_id


class VerifiedSpec(_Verified["JobRunSpec"]):
    """The spec as the pydantic model (the verifier, the driver, the control plane's tools)."""


class PlainVerifiedSpec(_Verified[PlainSpec]):
    """The same checks, the spec as plain JSON (the sidecars')."""


class _Window(Protocol):
    @property
    def not_before(self) -> datetime: ...

    @property
    def expires(self) -> datetime: ...


class _Spec(ApprovedSpec, Protocol):
    @property
    def validity(self) -> _Window: ...


S = TypeVar("S", bound=_Spec)


def check_skew(skew: timedelta) -> timedelta:
    if not timedelta(0) <= skew <= MAX_CLOCK_SKEW:
        raise ConfigError(f"clock skew must be between 0 and {MAX_CLOCK_SKEW.seconds} s")
    return skew


def verify_signed_run(
    envelope_obj: Any,
    approval_objs: Sequence[Any],
    trust_root: RootLike,
    *,
    now: datetime,
    run_id: str | None,
    skew: timedelta = DEFAULT_SKEW,
    require_approvals: bool = True,
    review: bool = False,
) -> VerifiedSpec:
    """Steps 1-6; the first failure raises its own typed error.

    ``review``: an owner reading a spec before approving it checks steps 1-3 and the
    run id only (there are no approvals yet, and the window may not have opened).
    """
    env, spec, digest, done = _verify(
        envelope_obj,
        approval_objs,
        trust_root,
        _model_spec,
        now=now,
        run_id=run_id,
        skew=skew,
        require_approvals=require_approvals,
        review=review,
    )
    return VerifiedSpec(spec, digest, env, tuple(approval_objs), now, tuple(done), _MINT)


def verify_signed_run_plain(
    envelope_obj: Any,
    approval_objs: Sequence[Any],
    trust_root: RootLike,
    *,
    now: datetime,
    run_id: str | None,
    skew: timedelta = DEFAULT_SKEW,
) -> PlainVerifiedSpec:
    """Steps 1-6 as :func:`verify_signed_run` runs them, without pydantic."""
    env, spec, digest, done = _verify(
        envelope_obj,
        approval_objs,
        trust_root,
        plain.parse_spec,
        now=now,
        run_id=run_id,
        skew=skew,
        require_approvals=True,
        review=False,
    )
    return PlainVerifiedSpec(spec, digest, env, tuple(approval_objs), now, tuple(done), _MINT)


def _model_spec(payload: bytes) -> JobRunSpec:
    from jobruntime.spec.models import JobRunSpec

    spec = parse_model(JobRunSpec, payload, "spec")
    plain.parse_spec(payload)  # what the pod's sidecars will accept: nothing less
    return spec


def _verify(
    envelope_obj: Any,
    approval_objs: Sequence[Any],
    trust_root: RootLike,
    parse_spec: Callable[[bytes], S],
    *,
    now: datetime,
    run_id: str | None,
    skew: timedelta,
    require_approvals: bool,
    review: bool,
) -> tuple[Envelope, S, str, list[str]]:
    check_skew(skew)
    # 1. The envelope: DSSE shape, payload type, the payload's size.
    env = envelope.from_json(envelope_obj, envelope.SPEC_TYPE, "spec envelope")
    # 2. The control plane signed these exact bytes.
    envelope.verify(env, trust_root, trust_root.control_plane, CONTROL_PLANE, now)
    # 3. Only signed bytes are parsed.
    spec = parse_spec(env.payload)
    digest = sha256_digest(env.payload)
    done = list(STEPS[:3])
    # 4. Every owner the run needs reached its threshold of distinct keys.
    if require_approvals and not review:
        approvals.tally(approval_objs, spec, digest, trust_root, now).require_threshold()
        done.append(STEPS[3])
    # 5. Now is inside the validity window, give or take the skew.
    window = spec.validity
    if not review:
        if now + skew < window.not_before:
            raise SpecNotYetValidError(
                f"run {spec.run_id} is valid only from {iso(window.not_before)}"
            )
        if now - skew > window.expires:
            raise SpecExpiredError(f"run {spec.run_id} expired at {iso(window.expires)}")
        done.append(STEPS[4])
    # 6. The spec is for the run this pod was started for (no substitution).
    if run_id is not None:
        if spec.run_id != run_id:
            raise RunIdMismatchError(
                f"asked to verify {run_id} but the signed spec is for {spec.run_id}"
            )
        done.append(STEPS[5])
    return env, spec, digest, done


def verify_response(
    body: bytes,
    trust_root: RootLike,
    *,
    now: datetime,
    run_id: str | None,
    skew: timedelta = DEFAULT_SKEW,
    require_approvals: bool = True,
    review: bool = False,
) -> VerifiedSpec:
    """The control plane's ``GET /runs/{id}/spec`` answer: limits on raw bytes, then 1-6."""
    from pydantic import ValidationError

    from jobruntime.controlplane.api import SignedRun

    obj = load_json(body, "signed spec response", max_bytes=4 * MAX_SPEC_BYTES)
    try:
        signed = SignedRun.model_validate(obj)
    except ValidationError:
        raise EnvelopeError("signed spec response is not {envelope, approvals}") from None
    return verify_signed_run(
        signed.envelope,
        signed.approvals,
        trust_root,
        now=now,
        run_id=run_id,
        skew=skew,
        require_approvals=require_approvals,
        review=review,
    )
