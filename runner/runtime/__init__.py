"""Containers: the Backend protocol, the embedded runc backend and the fake backend."""
