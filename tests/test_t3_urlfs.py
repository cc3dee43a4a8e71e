"""``eio://`` URLs (elliptio.urlfs): each reader library on the local store and on S3
(SeaweedFS); a column subset of a multi-row-group Parquet file reads only its ranges;
opening records lineage; substituted bytes are refused before the last byte; bad input
gets the library's errors as the exceptions fsspec users expect."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa  # test dependencies: a missing one fails, never skips
import pyarrow.parquet as pq
import pytest

import elliptio as eio
from elliptio import IntegrityError, api, lineage, urlfs_read
from elliptio.urlfs import EioFileSystem
from tests.fixtures.spy import Spy

COLUMNS = [f"c{i:02d}" for i in range(20)]
PICKED = ["c01", "c07", "c13"]  # not neighbours: no two of their chunks are adjacent


@pytest.fixture(params=["local", "s3"])
def env(request: pytest.FixtureRequest) -> str:
    """The default lake on the local store, or on S3 (SeaweedFS)."""
    request.getfixturevalue("lake_env" if request.param == "local" else "s3_lake_env")
    return str(request.param)


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """A CSV, a Parquet file of 20 columns in 5 row groups (incompressible, ~8 MB) and a
    file in a subdirectory."""
    work = tmp_path / "work"
    (work / "sub" / "deep").mkdir(parents=True)
    rnd = np.random.default_rng(7)
    pd.DataFrame({"a": range(500), "b": rnd.random(500)}).to_csv(work / "train.csv",
                                                                   index=False)
    table = pa.table({c: rnd.random(50_000) for c in COLUMNS})
    pq.write_table(table, work / "wide.parquet", row_group_size=10_000, compression="none")
    (work / "sub" / "deep" / "x.txt").write_text("hello\n")
    return {"csv": work / "train.csv", "parquet": work / "wide.parquet",
            "sub": work / "sub"}


def save(data: dict[str, Path]) -> eio.Artifact:
    a = eio.save([str(data["csv"]), str(data["parquet"]), str(data["sub"])])
    lineage.reset()  # saving records nothing, but be sure: only reads count below
    return a


def spy_reads() -> Spy:
    """A spy on the default lake's store.read_range (one GET each on S3); its
    ``opened`` the spy on store.open (the streams: one GET each on S3)."""
    lake = api.default_lake()
    opened = Spy(lake.store, "open")
    spy = Spy(opened, "read_range")
    spy.opened = opened  # type: ignore[attr-defined]
    lake._store = spy  # type: ignore[assignment]
    return spy


def spy_gets(env: str) -> list[tuple[str, int, int]]:
    """On S3, every GET of the default lake's store as it is sent: ("range", offset,
    length) for one ranged GET, ("stream", offset, length) for a stream. [] locally."""
    gets: list[tuple[str, int, int]] = []
    if env != "s3":
        return gets
    fast = api.default_lake().store._fast_getter()  # type: ignore[attr-defined]
    assert fast is not None
    for name, kind in (("get_range", "range"), ("open_range", "stream")):
        real = getattr(fast, name)

        def spied(s3key: str, offset: int, length: int, real=real, kind=kind) -> object:
            gets.append((kind, offset, length))
            return real(s3key, offset, length)

        setattr(fast, name, spied)
    return gets


def assert_streamed(env: str, gets: list[tuple[str, int, int]], first: int,
                    size: int) -> None:
    """S3: the first block one ranged GET, then [first, size) each byte once, in order:
    at most one ranged GET (the stream's first read), then one stream."""
    if env != "s3":
        return
    assert gets[0] == ("range", 0, first)
    assert [k for k, _, _ in gets[1:]] in (["range"], ["stream"], ["range", "stream"])
    pos = first
    for _, offset, length in gets[1:]:
        assert offset == pos
        pos += length
    assert pos == size


def test_pandas_reads_csv_and_parquet(env, data):
    a = save(data)
    url = a.files["train.csv"].eio_url
    assert url == f"eio://{a.id}/train.csv"
    assert pd.read_csv(url).equals(pd.read_csv(data["csv"]))
    got = pd.read_parquet(a.files["wide.parquet"].eio_url, columns=PICKED)
    assert got.equals(pd.read_parquet(data["parquet"], columns=PICKED))
    assert pd.read_csv(f"eio://{a.id[:10]}/train.csv").shape == (500, 2)  # id prefix
    with fsspec.open(f"eio://{a.id}/sub/deep/x.txt", "rt") as fh:
        assert fh.read() == "hello\n"


def test_listing_glob_find_and_info(env, data):
    a = save(data)
    fs = fsspec.filesystem("eio")
    assert isinstance(fs, EioFileSystem)
    assert fs.ls(f"eio://{a.id}/", detail=False) == [
        f"{a.id}/sub", f"{a.id}/train.csv", f"{a.id}/wide.parquet"]
    assert fs.ls(f"eio://{a.id}/sub", detail=False) == [f"{a.id}/sub/deep"]
    assert fs.find(f"eio://{a.id}") == [f"{a.id}/sub/deep/x.txt", f"{a.id}/train.csv",
                                        f"{a.id}/wide.parquet"]
    assert fs.glob(f"eio://{a.id}/**/*.txt") == [f"{a.id}/sub/deep/x.txt"]
    assert fs.glob(f"eio://{a.id}/*.csv") == [f"{a.id}/train.csv"]
    prefix = a.id[:8]
    assert fs.glob(f"eio://{prefix}/*.parquet") == [f"{prefix}/wide.parquet"]
    info = fs.info(f"eio://{a.id}/train.csv")
    assert info["type"] == "file" and info["size"] == data["csv"].stat().st_size
    assert info["sha256"] == hashlib.sha256(data["csv"].read_bytes()).hexdigest()
    assert fs.info(f"eio://{a.id}/sub/deep")["type"] == "directory"
    assert fs.isdir(f"eio://{a.id}/") and fs.isfile(f"eio://{a.id}/train.csv")
    assert not fs.exists(f"eio://{a.id}/nope.csv")
    assert fs.ukey(f"eio://{a.id}/train.csv") == info["sha256"]
    assert fs.modified(f"eio://{a.id}/train.csv") == a.created
    assert lineage.current() == []  # listing is not using


def test_empty_directories_are_listed(lake_env, tmp_path):
    (tmp_path / "d" / "empty").mkdir(parents=True)
    (tmp_path / "d" / "f.txt").write_text("x")
    a = eio.save([str(tmp_path / "d")])
    fs = fsspec.filesystem("eio")
    assert fs.ls(f"eio://{a.id}/d", detail=False) == [f"{a.id}/d/empty", f"{a.id}/d/f.txt"]
    assert fs.ls(f"eio://{a.id}/d/empty", detail=False) == []


def test_pyarrow_column_subset_reads_only_those_ranges(env, data):
    a = save(data)
    spy = spy_reads()
    fs = fsspec.filesystem("eio")
    url = a.files["wide.parquet"].eio_url
    got = pq.read_table(url, columns=PICKED, filesystem=fs)
    assert got.equals(pq.read_table(data["parquet"], columns=PICKED))

    size = data["parquet"].stat().st_size
    md = pq.ParquetFile(data["parquet"]).metadata
    assert md.num_row_groups == 5
    needed = []
    for g in range(md.num_row_groups):
        for c in range(md.num_columns):
            col = md.row_group(g).column(c)
            if col.path_in_schema in PICKED:
                start = col.dictionary_page_offset or col.data_page_offset
                needed.append((start, start + col.total_compressed_size))
    # the footer: pyarrow reads the file's last 64 KiB at once, then the rest of the
    # footer if it is longer
    footer = (size - max(64 << 10, md.serialized_size + 8), size)
    reads = [(args[1], args[1] + args[2]) for args, _ in spy.calls]
    outside = [r for r in reads
               if not any(s <= r[0] and r[1] <= e for s, e in [*needed, footer])]
    assert outside == []
    assert len(reads) <= len(needed) + 2  # one per column chunk (or fewer), the footer
    assert sum(e - s for s, e in reads) < size * 0.2  # 3 of 20 columns, and the footer
    assert spy.opened.calls == []  # no stream: nothing was read in order from the start
    assert lineage.current() == [a.id]


def test_pyarrow_dataset_and_pandas_with_a_lake_passed(lake, data):
    """storage_options={"lake": ...} / fsspec.filesystem("eio", lake=...): not the default
    lake (which here has nothing)."""
    import pyarrow.dataset as ds

    a = lake.save([str(data["parquet"])])
    lineage.reset()
    fs = fsspec.filesystem("eio", lake=lake)
    table = ds.dataset(f"{a.id}/", filesystem=fs, format="parquet").to_table(columns=PICKED)
    assert table.num_rows == 50_000
    df = pd.read_parquet(f"eio://{a.id}/wide.parquet", columns=["c02"],
                         storage_options={"lake": lake})
    assert len(df) == 50_000
    assert lineage.current() == [a.id]


def test_duckdb(env, data):
    import duckdb
    a = save(data)
    con = duckdb.connect()
    try:
        con.register_filesystem(fsspec.filesystem("eio"))
        [(n, total)] = con.sql(f"select count(*), sum(c07) from "
                               f"'eio://{a.id}/wide.parquet'").fetchall()
        assert n == 50_000
        assert total == pytest.approx(pd.read_parquet(data["parquet"])["c07"].sum())
        rows = con.sql(f"select count(*) from read_csv('eio://{a.id}/train.csv')").fetchall()
        assert rows == [(500,)]
        glob = con.sql(f"select count(*) from 'eio://{a.id}/*.parquet'").fetchall()
        assert glob == [(50_000,)]
    finally:
        con.close()
    assert lineage.current() == [a.id]


def test_polars(env, data):
    import polars as pl
    a = save(data)
    fs = fsspec.filesystem("eio")
    pq_url, csv_url = a.files["wide.parquet"].eio_url, a.files["train.csv"].eio_url
    with fs.open(pq_url) as fh:
        assert pl.read_parquet(fh, columns=PICKED).shape == (50_000, 3)
    with fs.open(pq_url) as fh:
        assert pl.scan_parquet(fh).select("c13").collect().shape == (50_000, 1)
    with fs.open(csv_url) as fh:
        assert pl.scan_csv(fh).collect().shape == (500, 2)
    # polars' own readers know no fsspec protocol; through pyarrow it takes the URL
    assert pl.read_parquet(pq_url, use_pyarrow=True, columns=["c01"]).shape == (50_000, 1)
    assert pl.read_csv(csv_url, use_pyarrow=True).shape == (500, 2)
    assert lineage.current() == [a.id]


def test_a_read_through_eio_url_becomes_based_on(env, data, tmp_path):
    a = save(data)
    other = eio.save([str(data["csv"])], info={"type": "unrelated"})
    lineage.reset()
    pd.read_csv(f"eio://{a.id}/train.csv")
    (tmp_path / "model.txt").write_text("m")
    b = eio.save([str(tmp_path / "model.txt")], type="model")
    assert b.based_on == [a.id]
    assert other.id not in b.based_on
    assert eio.save([str(tmp_path / "model.txt")], based_on=[]).based_on == []


def test_listing_or_a_failed_open_records_nothing(lake_env, data):
    a = save(data)
    fs = fsspec.filesystem("eio")
    fs.ls(f"eio://{a.id}/")
    fs.info(f"eio://{a.id}/train.csv")
    with pytest.raises(FileNotFoundError):
        fs.open(f"eio://{a.id}/missing.csv")
    assert lineage.current() == []


def substitute(env: str, a: eio.Artifact, path: str, content: bytes,
               request: pytest.FixtureRequest) -> None:
    """Put other bytes of the same size where the store holds *path*'s object: a chmod
    and a rewrite of the local file, or a new version stacked on the S3 key."""
    lake = api.default_lake()
    f = a.files[path]
    assert len(content) == f.size
    if env == "local":
        obj = Path(lake.store.root) / f.object  # type: ignore[attr-defined]
        obj.chmod(0o644)
        obj.write_bytes(content)
        return
    server = request.getfixturevalue("seaweedfs")
    bucket = request.getfixturevalue("s3_bucket")
    c = server.client()
    try:
        c.put_object(Bucket=bucket, Key=f"lake/{f.object}", Body=content)
    finally:
        c.close()


def test_substituted_bytes_are_refused_before_the_last_byte(env, tmp_path, request):
    original = b"x,y\n" + b"1,2\n" * 750_000  # 3 MB: several reads
    (tmp_path / "f.csv").write_bytes(original)
    a = eio.save([str(tmp_path / "f.csv")])
    substitute(env, a, "f.csv", original[:-2] + b"3\n", request)
    url = a.files["f.csv"].eio_url
    fs = fsspec.filesystem("eio")
    got = bytearray()
    with pytest.raises(IntegrityError, match="sha256"), fs.open(url) as fh:
        while chunk := fh.read(1 << 16):
            got += chunk
    assert 0 < len(got) < len(original)
    with pytest.raises(IntegrityError, match="sha256"), fs.open(url) as fh:
        fh.read()  # all at once: nothing handed over
    with pytest.raises(IntegrityError):
        pd.read_csv(url)
    with pytest.raises(IntegrityError):
        fs.cat(url)
    with fs.open(url) as fh:  # a range elsewhere is served as asked
        fh.seek(4)
        assert fh.read(4) == b"1,2\n"


def test_an_untouched_file_read_to_its_end_passes(lake_env, tmp_path):
    (tmp_path / "e.bin").write_bytes(b"")
    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 40_000)
    a = eio.save([str(tmp_path / "e.bin"), str(tmp_path / "f.bin")])
    fs = fsspec.filesystem("eio")
    assert fs.cat(f"eio://{a.id}/e.bin") == b""
    with fs.open(f"eio://{a.id}/f.bin", block_size=1 << 20) as fh:
        assert fh.read(10) == bytes(range(10))
        fh.seek(5000)
        assert fh.read(3) == bytes([5000 % 256, 5001 % 256, 5002 % 256])
        fh.seek(0)
        assert fh.read() == (tmp_path / "f.bin").read_bytes()


def streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small spans, so that a file of a few hundred KiB is read as a stream."""
    monkeypatch.setattr(urlfs_read, "SPAN", 64 << 10)
    monkeypatch.setattr(urlfs_read, "FITTED", 64 << 10)
    monkeypatch.setattr(urlfs_read, "AHEAD", 3 * (64 << 10))


def eio_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("eio-fetch", "eio-hash"))]


def test_a_file_read_in_order_streams_in_spans(env, tmp_path, monkeypatch):
    streamed(monkeypatch)
    content = np.random.default_rng(3).bytes(6_000_003)  # past the S3 reader's 4 MiB buffer
    (tmp_path / "s.bin").write_bytes(content)
    a = eio.save([str(tmp_path / "s.bin")])
    spy = spy_reads()
    gets = spy_gets(env)
    fs = fsspec.filesystem("eio")
    got = []
    before = set(eio_threads())
    with fs.open(a.files["s.bin"].eio_url, block_size=100_000) as fh:
        while chunk := fh.read(50_001):  # pieces that straddle the spans
            got.append(chunk)
        assert set(eio_threads()) - before  # the stream's fetch and hash threads
    assert b"".join(got) == content
    # the first block, then one stream of the store's (on S3: one GET for the rest,
    # after at most one ranged GET that starts it)
    assert [(args[1], args[2]) for args, _ in spy.calls] == [(0, 100_000)]
    assert len(spy.opened.calls) == 1
    assert_streamed(env, gets, 100_000, len(content))
    deadline = time.monotonic() + 10
    while set(eio_threads()) - before and time.monotonic() < deadline:  # closing ends them
        time.sleep(0.05)
    assert set(eio_threads()) - before == set()


def test_lines_read_one_by_one_fetch_each_range_once(env, tmp_path, monkeypatch):
    """readline reads a block and seeks back after the newline: still the stream."""
    streamed(monkeypatch)
    content = b"".join(b"%d,%d\n" % (i, i * i) for i in range(600_000))  # ~7 MB
    (tmp_path / "l.csv").write_bytes(content)
    a = eio.save([str(tmp_path / "l.csv")])
    spy = spy_reads()
    gets = spy_gets(env)
    fs = fsspec.filesystem("eio")
    with fs.open(a.files["l.csv"].eio_url, block_size=100_000) as fh:
        lines = list(fh)
    assert b"".join(lines) == content and len(lines) == 600_000
    assert [(args[1], args[2]) for args, _ in spy.calls] == [(0, 100_000)]
    assert len(spy.opened.calls) == 1
    assert_streamed(env, gets, 100_000, len(content))
    with fs.open(a.files["l.csv"].eio_url) as fh:  # and to its end: checked
        fh.seek(10)
        assert fh.read(5) == content[10:15]


def test_substituted_bytes_in_a_stream_are_refused_before_its_last_span(
        env, tmp_path, monkeypatch, request):
    streamed(monkeypatch)
    original = np.random.default_rng(4).bytes(700_000)
    (tmp_path / "s.bin").write_bytes(original)
    a = eio.save([str(tmp_path / "s.bin")])
    substitute(env, a, "s.bin", original[:-1] + bytes([original[-1] ^ 1]), request)
    fs = fsspec.filesystem("eio")
    got = bytearray()
    with fs.open(a.files["s.bin"].eio_url, block_size=100_000) as fh:
        with pytest.raises(IntegrityError, match="sha256"):
            while chunk := fh.read(30_000):
                got += chunk
        assert got == original[:len(got)]  # what was handed over is the file's start
        last_span = 100_000 + (len(original) - 100_000) // (64 << 10) * (64 << 10)
        assert 100_000 < len(got) <= last_span  # none of the span with the last byte
        assert fh.tell() == len(got)
        with pytest.raises(IntegrityError, match="sha256"):
            fh.read(30_000)  # the same read again: refused again
        with pytest.raises(IntegrityError, match="sha256"):
            fh.read()  # and everything to the end
        assert fh.tell() == len(got)


def test_bad_ids_and_paths_are_file_not_found(lake_env, data, tmp_path):
    a = save(data)
    b = eio.save([str(data["csv"])])
    fs = fsspec.filesystem("eio")
    unknown = "0" * 26
    for url, message in [
        (f"eio://{unknown}/train.csv", f"no artifact {unknown}"),
        ("eio://not-an-id!/train.csv", "not-an-id"),
        ("eio://zzzzzzzz/train.csv", "no artifact with an id starting with 'zzzzzzzz'"),
        (f"eio://{a.id}/missing.csv", "has no file or directory 'missing.csv'"),
    ]:
        with pytest.raises(FileNotFoundError, match=message) as err:
            fs.info(url)
        # the library's message, no chained traceback from inside the lake
        assert err.value.__cause__ is None
        assert err.value.__context__ is None or err.value.__suppress_context__
        with pytest.raises(FileNotFoundError, match=message):
            pd.read_csv(url)
    with pytest.raises(FileNotFoundError, match="is a directory, not a file"):
        fs.open(f"eio://{a.id}/sub")
    with pytest.raises(FileNotFoundError, match="one artifact at a time"):
        fs.ls("eio://")
    common = next(i for i in range(26) if a.id[i] != b.id[i])
    if common >= 6:  # ids share their time prefix when saved within minutes
        with pytest.raises(FileNotFoundError, match="ambiguous"):
            fs.info(f"eio://{a.id[:common]}/train.csv")
    assert lineage.current() == []


def test_writes_and_deletes_are_permission_errors(lake_env, data, tmp_path):
    a = save(data)
    fs = fsspec.filesystem("eio")
    url = f"eio://{a.id}/train.csv"
    for mode in ("w", "wb", "a", "ab", "xb", "r+b"):
        with pytest.raises(PermissionError, match="read-only"):
            fs.open(url, mode)
    with pytest.raises(PermissionError):
        pd.DataFrame({"a": [1]}).to_csv(f"eio://{a.id}/new.csv")
    local = tmp_path / "l.txt"
    local.write_text("x")
    for call in (lambda: fs.rm(url), lambda: fs.rm(f"eio://{a.id}/", recursive=True),
                 lambda: fs.rm_file(url), lambda: fs.mkdir(f"eio://{a.id}/new"),
                 lambda: fs.makedirs(f"eio://{a.id}/new/x"), lambda: fs.rmdir(f"eio://{a.id}/sub"),
                 lambda: fs.put(str(local), f"eio://{a.id}/l.txt"),
                 lambda: fs.put_file(str(local), f"eio://{a.id}/l.txt"),
                 lambda: fs.pipe(f"eio://{a.id}/p.txt", b"x"), lambda: fs.touch(url),
                 lambda: fs.mv(url, f"eio://{a.id}/moved.csv"),
                 lambda: fs.copy(url, f"eio://{a.id}/copy.csv")):
        with pytest.raises(PermissionError, match="read-only"):
            call()
    assert fs.cat(url) == data["csv"].read_bytes()  # nothing changed


def test_another_catalogue(lake_env, data):
    """The same reads over a MongoDB catalogue (mongomock), the lake passed in."""
    import mongomock
    from elliptio import Lake, Settings
    from elliptio.catalogue.mongo import MongoCatalogue

    cat = MongoCatalogue("mongodb://mock/", client=mongomock.MongoClient())
    with Lake(Settings.load(), catalogue=cat) as lk:
        a = lk.save([str(data["csv"]), str(data["parquet"])])
        lineage.reset()
        opts = {"lake": lk}
        assert pd.read_csv(f"eio://{a.id[:9]}/train.csv", storage_options=opts).shape == \
            (500, 2)
        df = pd.read_parquet(f"eio://{a.id}/wide.parquet", columns=PICKED,
                             storage_options=opts)
        assert df.shape == (50_000, 3)
        assert lineage.current() == [a.id]
