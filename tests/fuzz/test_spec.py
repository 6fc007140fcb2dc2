"""Spec, request, approval and cancel-order payloads: the JSON codec, the models, the shapes.

Every signed document is parsed twice in the product (pydantic in the verifier and the
control plane, plain shapes in the sidecars), so both parsers are fuzzed with the same
inputs, and the plain parser may never accept what the model refuses.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given

from jobruntime.errors import SpecError, SpecSchemaError
from jobruntime.spec import plain
from jobruntime.spec.codec import check_limits, load_json, parse_model
from jobruntime.spec.models import (
    Approval,
    CancelOrder,
    ClaimReceipt,
    JobRunRequest,
    JobRunSpec,
)
from tests.fuzz.support import Refused, json_inputs, pathological, typed

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def spec_doc() -> dict[str, Any]:
    """A valid spec with every field set: each mutation starts from something accepted."""
    return {
        "schema_version": 1,
        "run_id": "run-abcdef-1234",
        "job_id": "sales",
        "workspace": "demo",
        "module": {"import_name": "jobs.sales", "sha256": "0" * 64, "entry": "run"},
        "image_digest": "sha256:" + "1" * 64,
        "parameters": {"k": 5, "ratio": 0.5, "flag": True, "names": ["a", "b"], "s": "x"},
        "inputs": [
            {"name": "sales", "uri": "file:///d/s", "key_id": "org-a/sales", "owner": "org-a"}
        ],
        "outputs": [
            {"name": "summary", "uri": "file:///d/o", "key_id": "org-a/summary", "owner": "org-a"}
        ],
        "workload": {"isolation": "pod", "host_data": {"driver": "2" * 64, "executor": "3" * 64}},
        "validity": {
            "not_before": NOW.isoformat(),
            "expires": (NOW + timedelta(hours=1)).isoformat(),
        },
        "nonce": "2" * 64,
        "approval_policy": {"required_owners": ["org-a"], "threshold": 1},
    }


def request_doc() -> dict[str, Any]:
    doc = spec_doc()
    for name in ("schema_version", "run_id", "nonce"):
        del doc[name]
    doc["valid_for_seconds"] = 3600
    return doc


APPROVAL = {
    "schema_version": 1,
    "type": "approval",
    "run_id": "run-abcdef-1234",
    "spec_digest": "sha256:" + "4" * 64,
    "owner": "org-a",
    "approved_at": "2030-01-01T00:00:00Z",
}
CANCEL = {
    "schema_version": 1,
    "type": "cancel",
    "run_id": "run-abcdef-1234",
    "reason": "cancelled by request",
    "issued_at": "2030-01-01T00:00:00+00:00",
}
CLAIM = {
    "schema_version": 1,
    "type": "claim",
    "run_id": "run-abcdef-1234",
    "spec_digest": "sha256:" + "4" * 64,
    "claim_id": "5" * 64,
    "claimed_at": "2030-01-01T00:00:00Z",
}


def both_agree(model: type[Any], shape_parse: Any, data: bytes) -> None:
    """Typed errors from both; whatever the plain shape accepts, the model accepts too."""
    model_result = typed(parse_model, model, data, "doc")
    plain_result = typed(shape_parse, data)
    for result in (model_result, plain_result):
        if isinstance(result, Refused):
            assert isinstance(result.error, SpecError), result.code
    if not isinstance(plain_result, Refused):
        assert not isinstance(model_result, Refused), f"plain accepts, model: {model_result}"


# --- the codec: limits, then JSON -----------------------------------------------------


@given(json_inputs(spec_doc(), keys=list(spec_doc())))
def test_load_json_gives_json_or_a_spec_error(data: bytes) -> None:
    """Under the limits, ``load_json`` is the one door every signed document goes through."""
    result = typed(load_json, data, "doc")
    if isinstance(result, Refused):
        assert isinstance(result.error, SpecError)


@given(pathological())
def test_check_limits_is_linear_on_pathological_input(data: bytes) -> None:
    """Runs of quotes, escapes and brackets: refused or passed within the deadline."""
    typed(check_limits, data, "doc")


def test_regression_unterminated_string_of_escaped_quotes_is_not_quadratic() -> None:
    """Found by fuzzing: ``"\\"\\"\\"...`` (no closing quote) made the depth check retry
    its string pattern from every quote, about 2000 s for a 1 MiB spec (30 s for this
    128 KiB one; a few milliseconds now)."""
    data = b'"' + b'\\"' * (64 * 1024 - 1)
    started = time.monotonic()
    with pytest.raises(SpecSchemaError):
        load_json(data, "spec")
    assert time.monotonic() - started < 2


# --- the signed documents, pydantic and plain -------------------------------------------


@given(json_inputs(spec_doc(), keys=list(spec_doc())))
def test_spec_parsers(data: bytes) -> None:
    """``JobRunSpec`` (verifier, control plane) and ``plain.parse_spec`` (sidecars)."""
    both_agree(JobRunSpec, plain.parse_spec, data)


@given(json_inputs(APPROVAL, keys=list(APPROVAL)))
@example(json.dumps(APPROVAL | {"approved_at": "0001-01-01T00:00:00+01:00"}).encode())
@example(json.dumps(APPROVAL | {"approved_at": "9999-12-31T23:59:59-01:00"}).encode())
def test_approval_parsers(data: bytes) -> None:
    both_agree(Approval, plain.parse_approval, data)


@given(json_inputs(CANCEL, keys=list(CANCEL)))
def test_cancel_order_parsers(data: bytes) -> None:
    both_agree(CancelOrder, plain.parse_cancel_order, data)


@given(json_inputs(CLAIM, keys=list(CLAIM)))
def test_claim_receipt_parser(data: bytes) -> None:
    result = typed(parse_model, ClaimReceipt, data, "claim receipt")
    assert not isinstance(result, Refused) or isinstance(result.error, SpecError)


@given(json_inputs(request_doc(), keys=list(request_doc())))
def test_job_run_request_parser(data: bytes) -> None:
    """What a submitter sends the control plane (the CLI and the service parse it so)."""
    result = typed(parse_model, JobRunRequest, data, "request")
    assert not isinstance(result, Refused) or isinstance(result.error, SpecError)


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-00:01", "0001-01-01T00:30:00+01:00"]
)
def test_regression_timestamps_past_the_calendar_in_utc_are_schema_errors(stamp: str) -> None:
    """Found by fuzzing: a time that exists only in its own offset (year 1 at +01:00)
    raised OverflowError from ``astimezone(UTC)`` in both the model and the plain shape."""
    data = json.dumps(APPROVAL | {"approved_at": stamp}).encode()
    with pytest.raises(SpecSchemaError):
        parse_model(Approval, data, "approval")
    with pytest.raises(SpecSchemaError):
        plain.parse_approval(data)


@pytest.mark.parametrize(
    "number", [b"1" * 4301, b"-" + b"9" * 17, str(2**53).encode(), str(-(2**53)).encode()]
)
def test_regression_integers_rfc_8785_cannot_carry_are_schema_errors(number: bytes) -> None:
    """Found by fuzzing: over 4300 digits, ``int()`` in the range check raised ValueError;
    and +-2^53 passed it, then ``canonical`` (RFC 8785: +-(2^53 - 1)) raised
    IntegerDomainError when a parsed manifest's body was authenticated."""
    with pytest.raises(SpecSchemaError):
        load_json(b'{"k":' + number + b"}", "spec")


def test_the_largest_exact_integers_still_parse() -> None:
    assert load_json(str(2**53 - 1).encode(), "spec") == 2**53 - 1
    assert load_json(str(-(2**53 - 1)).encode(), "spec") == -(2**53 - 1)


@pytest.mark.parametrize("text", ['"\\ud800"', '["\\udc00x"]', '{"\\ud83d":1}'])
def test_regression_a_lone_surrogate_is_a_schema_error(text: str) -> None:
    """Found by fuzzing (in a manifest): ``"\\ud800"`` is valid JSON but not Unicode, and
    ``canonical`` (RFC 8785) raised CanonicalizationError on what had parsed."""
    with pytest.raises(SpecSchemaError):
        load_json(text.encode(), "doc")
    assert load_json(b'"\\ud83d\\ude00 \\\\ud800"', "doc") == "\U0001f600 \\ud800"
