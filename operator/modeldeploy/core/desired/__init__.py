"""Desired children of a ModelDeployment: one pure builder per kind, returning plain dicts.

Builders take the owner explicitly (never from a handler's context), so they are plain
functions of plain data and the unit tests call them directly.
"""
