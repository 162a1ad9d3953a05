"""DF_LOCAL_THREADS picks the embedded model's CPU threads (the model is not started)."""

from __future__ import annotations

import pytest

from dataflow.core.errors import ConfigError
from dataflow.serving import serving_from_env


def test_local_threads_from_the_environment(monkeypatch):
    monkeypatch.delenv("DF_API_URL", raising=False)
    monkeypatch.setenv("DF_LOCAL_THREADS", "1")
    serving = serving_from_env(quiet=True)
    try:
        assert serving.n_threads == 1
    finally:
        serving.close()
    monkeypatch.setenv("DF_LOCAL_THREADS", "two")
    with pytest.raises(ConfigError, match="DF_LOCAL_THREADS"):
        serving_from_env(quiet=True)
