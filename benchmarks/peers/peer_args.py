"""The command line every peer server takes, so benchmarks/serving.py starts them all alike.

Each peer runs as a script in a virtualenv of its own (their pins conflict); a script's own
folder is on `sys.path`, so this sibling module imports without installing anything.
"""

from __future__ import annotations

import argparse


def parse() -> argparse.Namespace:
    """`--model PATH --name NAME --port N`: the model file, its name in URLs, the HTTP port."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args()
