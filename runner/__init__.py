"""Executing pipelines: the OCI image store, the image builder, the container runtime, the engine.

Imports `pipeline`, never `web`.
"""
