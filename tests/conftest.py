"""Shared fixtures. Area fixtures live in tests/fixtures/<area>.py (each owned by the area)
and are loaded as plugins here, so every test file sees them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.fuse",
    "tests.fixtures.web",
    "tests.fixtures.postgres",
]

ENV_KEYS = [k for k in os.environ if k.startswith("ELLIPTIO_") and k != "ELLIPTIO_TEST_MONGO_URI"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No test sees the developer's configuration or home; lineage starts empty; the
    default lake (``eio.save`` and friends) is closed when the test ends."""
    for k in ENV_KEYS:
        monkeypatch.delenv(k, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    from elliptio import api, lineage

    lineage.reset()
    yield
    lineage.reset()
    api.close_default_lake()


@pytest.fixture
def lake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """ELLIPTIO_* pointing at a fresh local store and SQLite catalogue under tmp_path."""
    env = {
        "ELLIPTIO_STORE": f"file://{tmp_path}/store",
        "ELLIPTIO_CATALOGUE": f"sqlite:///{tmp_path}/catalogue.sqlite",
        "ELLIPTIO_USER": "andy",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def lake(lake_env: dict[str, str]):
    from elliptio import Lake, Settings

    lk = Lake(Settings.load())
    yield lk
    lk.close()
