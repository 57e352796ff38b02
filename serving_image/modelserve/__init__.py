"""modelserve: the ONNX Runtime serving image (KServe Open Inference Protocol v2, metrics).

ONNX Runtime 1.32 on Linux keeps a telemetry store (a device id and an event database under
~/.cache/Microsoft/DeveloperTools/.onnxruntime) unless ORT_DISABLE_TELEMETRY is set. A model
server must not record its host's identity or phone home on its owner's behalf, and in the image
(a user with no home directory) the attempt prints a non-JSON warning into the JSON log on every
start. So it is off before anything imports onnxruntime, unless the environment says otherwise.
"""

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
