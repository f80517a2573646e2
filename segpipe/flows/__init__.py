"""Prefect flows: thin wrappers that run segpipe's stages as tasks. One flow per file."""
