"""modeldeploy: a Kubernetes operator that serves ONNX models and rolls new revisions out safely.

The package is split into a pure core (API models, generators, decisions) and a thin shell that
talks to the API server; see DESIGN.md at the repository's shared root for the map.
"""

__version__ = "0.1.0"
