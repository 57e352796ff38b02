#!/usr/bin/env python3
"""Tier-2 local Kubernetes: the tier-1 control plane plus a real node on this machine (the
code: localcluster.node; what it does to the machine and how `down` undoes it: README.md here).

    python3 hack/cluster/node/localnode.py up [--state-dir DIR]   # start in the background
    python3 hack/cluster/node/localnode.py status [--state-dir DIR]
    python3 hack/cluster/node/localnode.py down [--state-dir DIR]  # stop and clean up everything
    python3 hack/cluster/node/localnode.py load-images [NAME...]   # import images built by
                                                                   # hack/images/build.sh
Needs root.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, only this folder is on sys.path; the package lives one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from localcluster.node import main

if __name__ == "__main__":
    sys.exit(main())
