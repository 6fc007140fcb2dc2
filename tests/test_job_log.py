"""``ctx.log``: only allow-listed field names, safe values and safe event names get out.

The review finding this guards against: a job that logs a row's value, in the event
name (an f-string) or in a field, puts customer data into the driver log.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import pytest

from jobruntime.job.errors import ModuleLoadError
from jobruntime.job.log import DEFAULT_FIELDS, EVENT_PLACEHOLDER, JobLogger

SENTINEL = "cust 7f3a91 <alice@example.com>"  # not an identifier: must never be logged
SHORT = "C7f3a91"  # an identifier-shaped value: only logged under an allowed name


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name.startswith("jobruntime")]


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="jobruntime.job")
    return caplog


def test_allowed_fields_and_safe_values_are_logged(caplog_info: pytest.LogCaptureFixture) -> None:
    JobLogger("run-1", "overlap").info("joined", rows=42, dataset="customers_a", seconds=1.5)
    assert lines(caplog_info) == [
        {
            "run_id": "run-1",
            "job": "overlap",
            "event": "joined",
            "rows": 42,
            "dataset": "customers_a",
            "seconds": 1.5,
        }
    ]


def test_an_event_name_that_is_not_an_identifier_is_replaced(
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    log = JobLogger("run-1", "overlap")
    log.info(f"bad row {SENTINEL}")
    log.warning(f"lookup.{SHORT}-MISSING")  # upper case: not an event name
    log.info("x" * 65)
    log.info("joined\n")
    events = [line["event"] for line in lines(caplog_info)]
    assert events == [EVENT_PLACEHOLDER] * 4
    assert SENTINEL not in caplog_info.text and SHORT not in caplog_info.text


def test_unknown_fields_are_dropped_and_only_counted(caplog_info: pytest.LogCaptureFixture) -> None:
    JobLogger("run-1", "overlap").info("joined", rows=3, customer=SHORT, email=SENTINEL)
    (line,) = lines(caplog_info)
    assert line["rows"] == 3 and line["dropped_fields"] == 2
    assert "customer" not in line and "email" not in line
    assert SHORT not in caplog_info.text and "customer" not in caplog_info.text


def test_an_allowed_field_with_an_unsafe_value_is_scrubbed(
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    JobLogger("run-1", "overlap").info(
        "joined", dataset=SENTINEL, step=["a", SHORT], rows=SHORT, count=None, version=True
    )
    (line,) = lines(caplog_info)
    assert line["dataset"] == "<str>" and line["step"] == "<list>"
    assert line["rows"] == "<str>"  # a counting field takes numbers, not identifiers
    assert line["count"] is None and line["version"] is True
    assert SENTINEL not in caplog_info.text and SHORT not in caplog_info.text


def test_fields_the_module_declares_are_accepted(caplog_info: pytest.LogCaptureFixture) -> None:
    log = JobLogger("run-1", "sales", fields=("group_by", "suppressed"))
    log.info("summarised", group_by="region", suppressed=7, other=1)
    (line,) = lines(caplog_info)
    assert line["group_by"] == "region" and line["suppressed"] == 7
    assert line["dropped_fields"] == 1
    assert "group_by" not in DEFAULT_FIELDS


@pytest.mark.parametrize(
    "fields", [("Rows",), ("has space",), ("event",), ("run_id",), "rows", ("x" * 33,)]
)
def test_a_bad_declaration_fails_the_run_before_any_data(fields: Any) -> None:
    with pytest.raises(ModuleLoadError) as info:
        JobLogger("run-1", "overlap", fields=fields)
    assert "has space" not in str(info.value)


def test_reserved_keys_cannot_be_overwritten(caplog_info: pytest.LogCaptureFixture) -> None:
    JobLogger("run-1", "overlap").info("joined", event=SENTINEL, run_id="forged", job="x")
    (line,) = lines(caplog_info)
    assert line["event"] == "joined" and line["run_id"] == "run-1" and line["job"] == "overlap"
    assert line["dropped_fields"] == 3


def test_there_is_no_reveal_escape_hatch(caplog_info: pytest.LogCaptureFixture) -> None:
    log = JobLogger("run-1", "overlap")
    for method in (log.info, log.warning):
        assert "reveal" not in inspect.signature(method).parameters
    log.info("joined", reveal=True, rows=SENTINEL)
    (line,) = lines(caplog_info)
    assert line["rows"] == "<str>" and line["dropped_fields"] == 1
    assert SENTINEL not in caplog_info.text
