"""An approved job module (trusted code) reaching past ``ctx``: undeclared datasets, data in
error messages, writes around the data source. Without Spark: ``ctx`` refuses before any
I/O, and the key agent and readers refuse what bypasses it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobruntime.errors import JobRuntimeError
from jobruntime.job.context import JobContext
from jobruntime.job.failure import describe_failure
from jobruntime.job.log import JobLogger
from jobruntime.keyagent.client import KeyAgentClient
from tests.adversarial.test_data import ROWS, part_files, read, refused, write_version
from tests.conftest import Runs
from tests.dataset.conftest import SENTINEL, AgentFactory, key_id


class NoSpark:
    """Fails the test if ``ctx`` touches Spark at all: refusals come before any I/O."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"ctx used spark.{name} before refusing")


@pytest.mark.attack(
    id="job-undeclared-dataset",
    threat="the job reads a dataset its spec does not declare, or writes one of its inputs",
    adversary="an approved job module (trusted code, but bounded by the spec)",
    mechanism="ctx resolves names only against the verified spec's inputs and outputs, "
    "before any I/O",
)
def test_ctx_refuses_undeclared_datasets_before_any_io(runs: Runs) -> None:
    spec = runs.signed(runs.approved()).spec
    ctx = JobContext(
        spark=NoSpark(),
        params=None,
        spec=spec,
        log=JobLogger(spec.run_id, spec.job_id),
        agent_socket="/nonexistent/agent.sock",
    )
    for attempt in (
        lambda: ctx.read("payroll"),
        lambda: ctx.read("overlap"),  # an output is not readable through ctx.read
        lambda: ctx.write(object(), "customers_a"),  # an input is not writable
        lambda: ctx.write(object(), "/tmp/elsewhere"),
    ):
        with pytest.raises(JobRuntimeError) as info:
            attempt()
        assert info.value.code == "job.undeclared_dataset"
    assert ctx.written == {}
    public = {n for n in dir(ctx) if not n.startswith("_")}
    assert public == {"log", "params", "published", "read", "spark", "spec", "write", "written"}


@pytest.mark.attack(
    id="job-values-in-errors-and-logs",
    threat="data values reach the driver's failure report or the job's log (a failed cast "
    "or a raise quoting a customer's value; a value logged under an allowed field)",
    adversary="an approved job module's mistakes; whoever reads logs and run status",
    mechanism="failures are reported as type and job line only; ctx.log allow-lists field "
    "names and scrubs values that are not identifier-shaped",
)
def test_values_reach_neither_the_failure_report_nor_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = tmp_path / "job.py"
    job.write_text(f"def run(ctx):\n    raise ValueError('customer {SENTINEL} is bad')\n")
    namespace: dict[str, object] = {}
    exec(compile(job.read_text(), str(job), "exec"), namespace)  # noqa: S102 - the test's job
    with pytest.raises(ValueError, match="is bad") as info:
        namespace["run"](None)  # type: ignore[operator]
    report = describe_failure(info.value, job)
    assert report == "job raised ValueError at job.py:2"
    caplog.set_level(logging.INFO)
    log = JobLogger("run-x", "job")
    log.info("rows_read", rows=3, customer=SENTINEL, dataset=f"{SENTINEL} smith")
    assert SENTINEL not in caplog.text
    assert "rows_read" in caplog.text


@pytest.mark.attack(
    id="job-writes-around-ctx",
    threat="a job bypasses ctx: writes an input through the key agent, or drops a plaintext "
    "Parquet file into an output's version for later readers",
    adversary="an approved job module (can find the agent's socket in the query plan)",
    mechanism="the agent wraps, MACs and records only for the spec's outputs; readers accept "
    "exactly the files of the recorded manifest",
)
def test_writes_around_ctx_are_refused_or_ignored(agents: AgentFactory, tmp_path: Path) -> None:
    agent = agents(writable=("other",))  # "sales" is an input of this spec, "other" an output
    client = KeyAgentClient(agent.socket)
    with pytest.raises(JobRuntimeError) as info:
        client.wrap("sales", key_id("sales"), b"k" * 16)
    assert getattr(info.value, "remote_code", None) == "keyagent.not_writable"
    with pytest.raises(JobRuntimeError) as record:
        client.record_version("sales", 1, "sha256:" + "ab" * 32)
    assert getattr(record.value, "remote_code", None) == "keyagent.not_writable"
    assert client.latest_version("sales") is None
    # A plaintext file dropped beside an output's genuine parts.
    uri = str(tmp_path / "other")
    write_version(agent, uri, dataset="other")
    plain = part_files(uri)[0].with_name("part-00007.parquet")
    pq.write_table(pa.table({"secret": [SENTINEL]}), plain)
    assert plain.name in refused(agent, uri, "dataset.file_extra", dataset="other")
    plain.unlink()
    assert read(agent, uri, dataset="other") == 3 * ROWS
