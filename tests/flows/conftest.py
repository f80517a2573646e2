"""Flow tests keep Prefect's result cache in their own temporary folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def result_storage(tmp_path):
    """Cached task results of this test only (not the user's ``~/.prefect/storage``)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    path = tmp_path / "prefect-storage"
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: path}):
        yield path
