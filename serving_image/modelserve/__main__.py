"""`modelserve` / `python -m modelserve`: parse settings, configure logging, run the server.

uvloop is used when installed (it is in the image): its event loop roughly halves the cost of
each socket read and write compared with asyncio's default loop.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from . import auth, config, logs
from .app import App, run
from .logs import AccessLog
from .metrics import Metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (non-zero when the model cannot be served)."""
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
        return asyncio.run(run(app))
    return uvloop.run(run(app))


if __name__ == "__main__":
    sys.exit(main())
