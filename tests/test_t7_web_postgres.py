"""The web page and its JSON API on a PostgreSQL catalogue, over real HTTP (issue 18): the
user stories' lake of tests/fixtures/web.py with its catalogue on the session server
(``lake_env`` is overridden here, so ``lake``, ``web_story`` and ``http`` are PostgreSQL's),
and a server of the test's own killed under the page: a clear 503, soon, without the
password, and the page answers again once the server is back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from elliptio import Lake, Settings
from elliptio.catalogue import open_catalogue
from tests.fixtures.web import Story, save_as

from .test_t3_postgres_lake import BOUND, checkpoint, restart_on_the_same_port
from .test_t7_web_api import STORY_QUERY, alert_text, esc, row_ids


@pytest.fixture
def lake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> dict[str, str]:
    """conftest's lake_env, its catalogue on PostgreSQL."""
    env = {"ELLIPTIO_STORE": f"file://{tmp_path}/store", "ELLIPTIO_CATALOGUE": pg_url,
           "ELLIPTIO_USER": "andy"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_search_on_postgres(web_story: Story, http: httpx.Client, pg_url: str, postgres):
    s = web_story
    assert s.lake.catalogue.url.startswith("postgresql://")
    # what the page shows is what the server holds (another connection sees the rows)
    other = open_catalogue(pg_url)
    try:
        assert other.get(s.andy.id) == s.andy.metadata
    finally:
        other.close()

    body = http.get("/api/search", params={"q": STORY_QUERY}).json()
    assert body["total"] == 1 and [i["id"] for i in body["items"]] == [s.andy.id]
    (row,) = body["items"]
    assert row["type"] == "dataset_list" and row["tags"] == ["dataset"]
    assert sorted(row["files"]) == ["test.txt", "train.txt"]
    page = http.get("/", params={"q": STORY_QUERY})
    assert page.status_code == 200 and row_ids(page.text) == [s.andy.id]
    assert f'<code id="query-text">{esc(STORY_QUERY)}</code>' in page.text
    # the type is a tag; the count is the server's; globs that match nothing
    typed = http.get("/api/search", params={"q": "tag=dataset_list"}).json()
    assert {i["id"] for i in typed["items"]} == {s.andy.id, s.others[1].id, s.others[2].id}
    assert typed["total"] == 3
    assert http.get("/api/search", params={"q": "user=andy"}).json()["total"] == 3
    for q in ("file=*.nomatch", "tag=*nomatch*"):
        nothing = http.get("/api/search", params={"q": q}).json()
        assert nothing["items"] == [] and nothing["total"] == 0
    deep = http.get("/api/search", params={"based_on": s.andy.id, "transitive": "on"}).json()
    assert [i["id"] for i in deep["items"]] == [s.charlie.id, s.brenda.id]
    # keyset paging through the six, newest first, two per page
    seen, after = [], None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        got = http.get("/api/search", params=params).json()
        seen += [i["id"] for i in got["items"]]
        if not got["next"]:
            break
        after = got["next"]
    every = [s.andy.id, s.brenda.id, s.charlie.id, *(o.id for o in s.others)]
    assert seen == sorted(every, reverse=True)
    assert postgres.password not in page.text


def test_artifact_page_on_postgres(web_story: Story, http: httpx.Client):
    s = web_story
    a = s.andy
    r = http.get(f"/artifacts/{a.id}")
    assert r.status_code == 200
    for name, f in a.files.items():
        assert f'href="/artifacts/{a.id}/files/{name}"' in r.text and f.sha256 in r.text
    assert "stratification: new-cool-method" in r.text
    children = r.text.split('id="children"', 1)[1].split("</section>", 1)[0]
    assert s.brenda.id in children and s.charlie.id not in children
    body = http.get(f"/api/artifacts/{a.id}").json()
    assert body["id"] == a.id and [c["id"] for c in body["children"]] == [s.brenda.id]
    assert http.get(f"/artifacts/{a.id[:12]}", follow_redirects=False).status_code in (
        301, 302, 303, 307, 308)
    got = http.get(f"/artifacts/{a.id}/files/train.txt")
    assert got.status_code == 200 and got.content == b"x,y\n1,2\n3,4\n"
    lineage = http.get(f"/api/artifacts/{s.brenda.id}/lineage", params={"depth": "1"}).json()
    assert {n["id"]: n["layer"] for n in lineage["nodes"]} == \
        {a.id: -1, s.brenda.id: 0, s.charlie.id: 1}


def test_the_server_dies_under_the_page(pg_server, tmp_path, serve, monkeypatch):
    url = pg_server.url(pg_server.create_database())
    lake = Lake(Settings.load(store=f"file://{tmp_path}/store", catalogue=url, user="andy"))
    try:
        a = save_as(lake, "andy", {"train.txt": b"x\n"}, tmp_path / "work", based_on=[],
                    info={"type": "dataset_list"})
        server = serve(lake)
        assert row_ids(httpx.get(server.url + "/", params={"q": STORY_QUERY}).text) == [a.id]
        assert httpx.get(server.url + "/api/health").status_code == 200
        checkpoint(pg_server)  # the save survives the kill (the test server commits lazily)

        pg_server.kill()
        for path in ["/?q=tag=*dataset*", f"/artifacts/{a.id}", "/api/search?q=user=andy"]:
            started = time.monotonic()
            r = httpx.get(server.url + path, timeout=BOUND + 10)
            assert time.monotonic() - started < BOUND, path
            assert r.status_code == 503, (path, r.status_code)
            assert pg_server.password not in r.text
            assert "Traceback" not in r.text and 'File "' not in r.text
            if path.startswith("/api/"):
                assert r.json()["error"]
            else:
                assert "The catalogue is not available" in r.text
                assert "PostgreSQL catalogue postgresql://***@127.0.0.1" in alert_text(r.text)
        health = httpx.get(server.url + "/api/health", timeout=BOUND + 10)
        assert health.status_code == 503 and health.json()["catalogue"]["ok"] is False
        assert pg_server.password not in health.text

        restart_on_the_same_port(pg_server, monkeypatch)
        deadline = time.monotonic() + BOUND
        while (r := httpx.get(server.url + "/api/search", params={"q": "user=andy"},
                              timeout=BOUND + 10)).status_code != 200:
            assert time.monotonic() < deadline, "the page does not recover with the server"
            time.sleep(0.2)
        assert [i["id"] for i in r.json()["items"]] == [a.id]
    finally:
        lake.close()
