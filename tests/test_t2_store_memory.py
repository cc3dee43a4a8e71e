"""What the in-memory store adds to the store contract (tests/test_t2_store_contract.py runs
that against it): lakes shared by name, sealed artifacts closed to new keys, and the fault
hook tests use instead of patching a store's internals."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from elliptio.errors import ConfigError, Immutable, StorageError
from elliptio.store import open_store
from elliptio.store.memory import MemoryStore

PREFIX = "2026/11/24/andy/01aaaaaaaaaaaaaaaaaaaaaaaa"


def name() -> str:
    return f"memory://t-{os.urandom(6).hex()}"


def test_stores_of_one_name_share_their_objects_while_one_exists() -> None:
    url = name()
    first = open_store(url)
    assert isinstance(first, MemoryStore) and first.url == url
    first.put_bytes(f"{PREFIX}/a", b"a")
    assert MemoryStore(url).read_bytes(f"{PREFIX}/a") == b"a"
    assert not MemoryStore(name()).exists(f"{PREFIX}/a")
    private = MemoryStore("memory://")
    private.put_bytes(f"{PREFIX}/a", b"mine")
    assert list(MemoryStore("memory://").list()) == []  # another private lake
    assert private.url_for(f"{PREFIX}/a b") == f"{private.url}/{PREFIX}/a%20b"
    del first
    gc.collect()
    assert list(MemoryStore(url).list()) == []  # the last store of the name was gone


@pytest.mark.parametrize("url", ["memory://a/b", "memory://x?y=1", "memory://-x",
                                 "file:///tmp/x"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        MemoryStore(url)


def test_a_sealed_artifact_takes_no_new_keys(tmp_path: Path) -> None:
    st = MemoryStore(name())
    st.put_bytes(f"{PREFIX}/.eio/metadata.yaml", b"id: x")
    st.seal(PREFIX)
    with pytest.raises(StorageError, match="sealed"):
        st.put_bytes(f"{PREFIX}/late.txt", b"late")
    (tmp_path / "src").write_bytes(b"late")
    staged = st.stage(f"{PREFIX}/deep/late.bin", str(tmp_path / "src"))
    with pytest.raises(StorageError, match="sealed"):
        staged.commit()
    with pytest.raises(Immutable):
        st.remove_orphan(PREFIX)
    assert list(st.list(PREFIX)) == [f"{PREFIX}/.eio/metadata.yaml"]
    st.put_bytes(f"{PREFIX}x/other", b"a prefix that only starts alike is not sealed")


def test_faults_fail_an_operation_before_it_changes_anything(tmp_path: Path) -> None:
    url = name()
    st = MemoryStore(url)
    seen: list[tuple[str, str]] = []

    def faults(operation: str, key: str) -> None:
        seen.append((operation, key))
        if operation == "commit":
            raise StorageError("injected")

    MemoryStore(url).faults = faults  # one hook for every store of the name
    (tmp_path / "src").write_bytes(b"data")
    staged = st.stage(f"{PREFIX}/f", str(tmp_path / "src"))
    assert st.staged == 1
    with pytest.raises(StorageError, match="injected"):
        staged.commit()
    assert not st.exists(f"{PREFIX}/f") and st.staged == 1
    staged.discard()
    assert st.staged == 0
    assert [op for op, _ in seen] == ["stage", "commit", "exists"]
    st.faults = None
    st.put_bytes(f"{PREFIX}/f", b"data")
    assert st.read_bytes(f"{PREFIX}/f") == b"data"
