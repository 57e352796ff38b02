"""The process's exit codes, in one place: `modelserve --help` lists them and the code uses them.

A supervisor (the kubelet, a test, a shell script) reads these to tell a configuration mistake,
which no restart fixes, from a model that cannot be served, and a drain that ran out of time
from a clean stop.
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
MODEL_FAILED: Final = 1
CONFIG: Final = 2
DRAIN_TIMEOUT: Final = 3

EXPLAINED: Final = {
    OK: "stopped; every request received was answered",
    MODEL_FAILED: "the model cannot be served, or the port cannot be bound",
    CONFIG: "bad flags or environment, or a bad TLS certificate or key",
    DRAIN_TIMEOUT: "stopped at --drain-timeout; requests still running got 503",
}


def help_text() -> str:
    """The exit-code table for `--help`."""
    return "exit codes:\n" + "\n".join(f"  {code}  {what}" for code, what in EXPLAINED.items())
