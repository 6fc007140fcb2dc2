"""Every command's outermost frame: one way to fail, one debug switch.

An expected failure prints one line, ``<prog>: <code>: <message>``, and returns its
error class's exit code; anything else prints only the exception's type (its message
may quote data) and returns 70. ``JOBRUNTIME_DEBUG=1`` re-raises an unexpected error
with its traceback, and only in development mode (``JOBRUNTIME_DEV=1``): outside it the
variable is refused before the command runs (``config.debug_refused``), so a confidential
run never starts with it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from jobruntime.errors import DebugRefusedError, JobRuntimeError

DEBUG_ENV = "JOBRUNTIME_DEBUG"


def debugging() -> bool:
    from jobruntime.verification.pinned import dev_mode

    return dev_mode() and os.environ.get(DEBUG_ENV) == "1"


def _refuse_debug_outside_dev_mode() -> None:
    from jobruntime.verification.pinned import dev_mode

    if os.environ.get(DEBUG_ENV) and not dev_mode():
        raise DebugRefusedError(
            f"{DEBUG_ENV} is set: tracebacks can quote data, so it is refused outside "
            "development mode (JOBRUNTIME_DEV=1); unset it"
        )


def run_main(
    prog: str, body: Callable[[], int], *, on_failure: Callable[[str], None] | None = None
) -> int:
    """``body()``'s exit code; ``on_failure`` also gets the one line (a termination message)."""
    try:
        _refuse_debug_outside_dev_mode()
        return body()
    except JobRuntimeError as exc:
        line = exc.one_line()
        code = exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        line, code = f"internal: unexpected {type(exc).__name__}", 70
        if on_failure is not None:
            on_failure(line)
        print(f"{prog}: {line}", file=sys.stderr)
        if debugging():
            raise
        return code
    if on_failure is not None:
        on_failure(line)
    print(f"{prog}: {line}", file=sys.stderr)
    return code
