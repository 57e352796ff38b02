"""`modelserve` / `python -m modelserve`: parse settings, configure logging, run the server.

uvloop is used when installed (it is in the image): its event loop roughly halves the cost of
each socket read and write compared with asyncio's default loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import auth, config, exitcodes, logs
from .app import App, run
from .logs import AccessLog
from .metrics import Metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see `exitcodes`: 1 when the model cannot be served,
    2 for a configuration error, 3 when the drain timed out)."""
    settings = config.load(argv)
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    app = App(
        settings,
        metrics=Metrics(
            model=settings.name,
            version=settings.version,
            drift_max_features=settings.drift_max_features,
        ),
        auth=auth.from_settings(
            token=settings.auth_token,
            jwt_secret=settings.jwt_secret,
            jwt_public_key=settings.jwt_public_key,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        ),
        access_log=AccessLog(fmt=settings.log_format) if settings.access_log else None,
    )
    try:
        import uvloop
    except ImportError:
        code = asyncio.run(run(app))
    else:
        code = uvloop.run(run(app))
    if code == exitcodes.DRAIN_TIMEOUT:
        _leave_now(code)
    return code


def _leave_now(code: int) -> NoReturn:
    """Exit without finalizing the interpreter: inference threads are still inside ONNX
    Runtime, and destroying their sessions under them aborts the process (SIGABRT, exit 134)
    instead of exiting with the documented code. What was logged is flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
