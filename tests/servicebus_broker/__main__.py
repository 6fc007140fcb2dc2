"""``python -m tests.servicebus_broker --port 0 --port-file F``: run the test broker."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from tests.servicebus_broker.broker import serve


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servicebus_broker", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=5672, help="port; 0 picks a free one (default 5672)"
    )
    parser.add_argument("--port-file", type=Path, help="write the port actually bound here")
    parser.add_argument(
        "--lock-duration", type=float, default=30.0, help="peek-lock duration, seconds"
    )
    parser.add_argument("--max-delivery-count", type=int, default=10)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every operation to stderr"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s servicebus-broker %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.host, args.port, args.port_file, args.lock_duration, args.max_delivery_count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
