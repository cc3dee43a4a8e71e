"""The web page over real HTTP (uvicorn on 127.0.0.1, httpx): search, artifact, files,
logs, lineage, errors, access token, root path, security headers, and `eio web` itself."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from markupsafe import escape

from elliptio import Lake, Settings
from elliptio.artifact import dump_metadata
from elliptio.catalogue.sqlite import SQLiteCatalogue
from elliptio.errors import StorageError
from elliptio.ids import id_time, new_id
from elliptio.store.local import LocalStore
from tests.fixtures.trees import FILES, expected_dirs, make_tree
from tests.fixtures.web import LiveServer, Story, free_port, save_as

STORY_QUERY = "user=andy,since=10d,file=*.txt,tag=*dataset*"


def esc(text: str) -> str:
    """How the templates (Jinja2 autoescape) write *text*."""
    return str(escape(text))


def row_ids(page: str) -> list[str]:
    """Ids of the results table's rows, in order."""
    body = page.split('<table id="results"', 1)
    if len(body) == 1:
        return []
    return re.findall(r'<tr data-id="([0-9a-z]{26})">', body[1])


def alert_text(page: str) -> str:
    m = re.search(r'role="alert"[^>]*>(.*?)</p>', page, re.S)
    return html.unescape(m.group(1)) if m else ""


def put_artifact(lake: Lake, *, user: str = "mallory", info: Any = None,
                 tags: list[str] | None = None, files: dict[str, bytes] | None = None,
                 logs: dict[str, bytes] | None = None, based_on: list[str] | None = None,
                 objects: dict[str, str] | None = None,
                 provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write an artifact straight into the store and catalogue, bypassing save's checks:
    what a hostile or hand-edited ``metadata.yaml`` can hold (reindex would index it)."""
    import hashlib

    aid = new_id()
    created = id_time(aid)
    prefix = f"{created:%Y/%m/%d}/{user}/{aid}"
    file_records = []
    for path, content in (files or {}).items():
        key = (objects or {}).get(path, f"{prefix}/{path}")
        if key.startswith(prefix + "/"):
            lake.store.put_bytes(key, content)
        file_records.append({"path": path, "size": len(content),
                             "sha256": hashlib.sha256(content).hexdigest(), "object": key})
    log_records = {}
    for name, content in (logs or {}).items():
        key = f"{prefix}/.eio/logs/{name}.txt"
        lake.store.put_bytes(key, content)
        log_records[name] = {"path": f".eio/logs/{name}.txt", "size": len(content),
                             "sha256": hashlib.sha256(content).hexdigest(), "object": key}
    md = {"elliptio": 1, "id": aid, "user": user,
          "created": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
          "prefix": prefix, "info": info or {}, "tags": tags or [],
          "based_on": based_on or [], "files": file_records, "logs": log_records,
          "provenance": provenance if provenance is not None else {"host": "test"}}
    lake.store.put_bytes(f"{prefix}/.eio/metadata.yaml", dump_metadata(md))
    lake.catalogue.upsert(md)
    return md


# -- search ---------------------------------------------------------------------------------
def test_story_query_in_the_box_finds_andys_dataset(web_story: Story, http: httpx.Client):
    r = http.get("/", params={"q": STORY_QUERY})
    assert r.status_code == 200
    assert row_ids(r.text) == [web_story.andy.id]
    assert "new-cool-method" in r.text and "stratification" in r.text
    # the query box keeps what was typed; the query is shown in the CLI language
    assert f'value="{esc(STORY_QUERY)}"' in r.text
    assert f'<code id="query-text">{esc(STORY_QUERY)}</code>' in r.text


def test_form_fields_make_the_same_query(web_story: Story, http: httpx.Client):
    r = http.get("/", params=[("user", "andy"), ("days", "10"), ("file", "*.txt"),
                              ("tag", "*dataset*")])
    assert r.status_code == 200
    assert row_ids(r.text) == [web_story.andy.id]
    assert esc(STORY_QUERY) in r.text
    # the fields are echoed back, so the link is the search
    assert 'name="user" value="andy"' in r.text and 'name="file" value="*.txt"' in r.text


def test_api_search_returns_rows_with_telling_fields(web_story: Story, http: httpx.Client):
    r = http.get("/api/search", params={"q": STORY_QUERY})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["total"] == 1 and body["query"] == STORY_QUERY
    (row,) = body["items"]
    assert row["id"] == web_story.andy.id
    assert row["user"] == "andy" and row["type"] == "dataset_list"
    assert sorted(row["files"]) == ["test.txt", "train.txt"] and row["tags"] == ["dataset"]
    assert ["stratification", "new-cool-method"] in row["info"]


def test_the_seeds_untagged_dataset_is_found_by_its_type_and_shown_with_it(
        lake: Lake, tmp_path: Path, serve, monkeypatch):
    """The seed's exact save (no tags) and Brenda's search, in the box, in the fields and
    as JSON; the type is shown among the tags, told apart from the saved ones."""
    import elliptio as eio

    work = tmp_path / "seed"
    work.mkdir()
    (work / "train.txt").write_text("a,b\n1,2\n")
    (work / "test.txt").write_text("a,b\n3,4\n")
    monkeypatch.chdir(work)
    a = eio.save(["train.txt", "test.txt"],
                 info={"type": "dataset_list", "stratification": "new-cool-method"})
    model = save_as(lake, "andy", {"m.txt": b"m"}, work, tags=["v1"], based_on=[],
                    info={"type": "model"})
    server = serve(lake)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        body = http.get("/api/search", params={"q": STORY_QUERY}).json()
        assert body["total"] == 1
        (row,) = body["items"]
        assert row["id"] == a.id and row["type"] == "dataset_list"
        assert row["tags"] == [] and row["query_tags"] == ["dataset_list"]
        fields = http.get("/api/search", params=[("user", "andy"), ("days", "10"),
                                                 ("file", "*.txt"), ("tag", "*dataset*")])
        assert [r["id"] for r in fields.json()["items"]] == [a.id]
        page = http.get("/", params={"q": STORY_QUERY}).text
        assert row_ids(page) == [a.id]
        assert ('<span class="tag type-tag" title="its type, which counts as a tag">'
                'dataset_list</span>') in page
        both = http.get("/api/search", params={"q": "tag=v1"}).json()["items"]
        assert [r["id"] for r in both] == [model.id]
        assert both[0]["tags"] == ["v1"] and both[0]["query_tags"] == ["v1", "model"]


@pytest.mark.parametrize("params, expect", [
    ({"info": "stratification=new-cool-method"}, ["andy"]),
    ({"info": "epochs=10"}, ["brenda"]),
    ({"info": 'epochs="10"'}, []),  # a string is not the integer 10
    ({"type": "dataset_list", "user": "andy"}, ["andy", "other1"]),
    ({"type": "dataset_*"}, ["andy", "other1", "other2"]),
    ({"text": "COOL-method"}, ["andy"]),
    ({"tag": "raw"}, ["other1"]),
    ({"file": "*.md"}, ["charlie", "other0"]),
    ({"user": "dora"}, ["other2"]),
    ({"q": "user=andy", "user": "brenda"}, ["brenda"]),  # a field overrides the box
])
def test_search_fields(web_story: Story, http: httpx.Client, params: dict[str, str],
                       expect: list[str]):
    names = {web_story.andy.id: "andy", web_story.brenda.id: "brenda",
             web_story.charlie.id: "charlie"}
    names.update({a.id: f"other{i}" for i, a in enumerate(web_story.others)})
    r = http.get("/api/search", params=params)
    assert r.status_code == 200, r.text
    assert sorted(names[i["id"]] for i in r.json()["items"]) == sorted(expect)


def test_based_on_direct_transitive_and_by_prefix(web_story: Story, http: httpx.Client):
    s = web_story
    direct = http.get("/api/search", params={"based_on": s.andy.id}).json()
    assert [i["id"] for i in direct["items"]] == [s.brenda.id]
    deep = http.get("/api/search", params={"based_on": s.andy.id, "transitive": "on"}).json()
    assert {i["id"] for i in deep["items"]} == {s.brenda.id, s.charlie.id}
    by_prefix = http.get("/api/search", params={"based_on": s.andy.id[:20]}).json()
    assert [i["id"] for i in by_prefix["items"]] == [s.brenda.id]
    r = http.get("/", params={"based_on": "zzzzzzzz"})
    assert r.status_code == 400 and "based on" in alert_text(r.text)


def test_time_range(web_story: Story, http: httpx.Client):
    today = datetime.now(UTC).date()
    everything = {a.id for a in [web_story.andy, web_story.brenda, web_story.charlie,
                                 *web_story.others]}
    r = http.get("/api/search", params={"from": str(today), "to": str(today)})
    assert {i["id"] for i in r.json()["items"]} == everything
    r = http.get("/api/search", params={"to": str(today - timedelta(days=1))})
    assert r.json()["items"] == []
    r = http.get("/api/search", params={"from": str(today + timedelta(days=1))})
    assert r.json()["items"] == []
    r = http.get("/api/search", params={"days": "1"})
    assert {i["id"] for i in r.json()["items"]} == everything
    r = http.get("/", params={"days": "3", "from": str(today)})
    assert r.status_code == 400 and "not both" in alert_text(r.text)


def test_keyset_paging_both_ways_and_order(web_story: Story, http: httpx.Client):
    everything = [a.id for a in [web_story.andy, web_story.brenda, web_story.charlie,
                                 *web_story.others]]
    newest_first = sorted(everything, reverse=True)
    seen: list[str] = []
    pages: list[list[str]] = []
    url = "/?limit=2"
    while url:
        r = http.get(url)
        assert r.status_code == 200
        ids = row_ids(r.text)
        assert len(ids) <= 2
        pages.append(ids)
        seen += ids
        m = re.search(r'id="next-page" rel="next" href="([^"]+)"', r.text)
        url = html.unescape(m.group(1)) if m else ""
    assert seen == newest_first and len(pages) == 3
    # back from the last page: the previous link shows the middle page again
    prev = re.search(r'id="prev-page" rel="prev" href="([^"]+)"', r.text)
    assert prev is not None
    back = http.get(html.unescape(prev.group(1)))
    assert row_ids(back.text) == pages[1]
    oldest = http.get("/api/search", params={"order": "oldest", "limit": "3"}).json()
    assert [i["id"] for i in oldest["items"]] == sorted(everything)[:3]
    assert oldest["next"] == sorted(everything)[2] and oldest["total"] == 6
    # limit=0 is no limit, as in Python, the CLI and the mount: one page holds all six
    for params in ({"limit": "0"}, {"q": "limit=0"}):
        every = http.get("/api/search", params=params).json()
        assert [i["id"] for i in every["items"]] == newest_first and every["next"] is None
    assert row_ids(http.get("/", params={"limit": "0"}).text) == newest_first


def test_the_count_stops_at_its_limit_and_says_so(web_story: Story, http: httpx.Client,
                                                  monkeypatch: pytest.MonkeyPatch):
    """Past COUNT_LIMIT matches the page shows "N+" and the JSON total_exact false (the
    count stops there instead of reading every match); at or under it, the exact number."""
    from elliptio.web import search

    monkeypatch.setattr(search, "COUNT_LIMIT", 4)
    body = http.get("/api/search").json()
    assert (body["total"], body["total_exact"]) == (4, False)
    assert '<strong id="total">4+</strong> artifacts' in http.get("/").text
    andy = http.get("/api/search", params={"q": "user=andy"}).json()
    assert (andy["total"], andy["total_exact"]) == (len(andy["items"]), True)
    monkeypatch.setattr(search, "COUNT_LIMIT", 6)  # exactly as many as there are
    body = http.get("/api/search").json()
    assert (body["total"], body["total_exact"]) == (6, True)
    assert '<strong id="total">6</strong> artifacts' in http.get("/").text


@pytest.mark.parametrize("params, message", [
    ({"q": "user=andy,bogus"}, "'bogus' is not key=value"),
    ({"q": "since=yesterdayish"}, "cannot read 'yesterdayish' as a time"),
    ({"q": "colour=red"}, "unknown query key 'colour'"),
    ({"q": "file=[abc"}, "unclosed '['"),
    ({"days": "ten"}, "expected a number"),
    ({"info": "no-equals-sign"}, "is not key=value"),
    ({"limit": "100000"}, "limit must be 0 (no limit) or from 1 to 500"),
    ({"limit": "-1"}, "limit must be 0 (no limit) or from 1 to 500"),
    ({"q": "limit=-3"}, "limit must be 0 (no limit) or a positive integer"),
    ({"user": 'a",b'}, "cannot hold a '\"' together with a ','"),
    ({"text": 'one " quote'}, "an odd number of '\"'"),
])
def test_malformed_query_shows_the_form_with_the_message(web_story: Story, http: httpx.Client,
                                                          params: dict[str, str],
                                                          message: str):
    r = http.get("/", params=params)
    assert r.status_code == 400
    assert message in alert_text(r.text)
    assert '<form id="search"' in r.text and "Traceback" not in r.text
    if "q" in params:
        assert f'value="{esc(params["q"])}"' in r.text
    api = http.get("/api/search", params=params)
    assert api.status_code == 400 and message in api.json()["error"]


# -- one artifact -------------------------------------------------------------------------
def test_artifact_page(web_story: Story, http: httpx.Client):
    a = web_story.andy
    r = http.get(f"/artifacts/{a.id}")
    assert r.status_code == 200
    text = r.text
    for name, f in a.files.items():
        assert f'href="/artifacts/{a.id}/files/{name}"' in text
        assert f.sha256 in text
    assert esc(f'a = eio.load("{a.id}")') in text
    assert "stratification: new-cool-method" in text  # raw YAML
    assert f'href="/artifacts/{a.id}/logs/pip_freeze"' in text
    children = text.split('id="children"', 1)[1].split("</section>", 1)[0]
    assert web_story.brenda.id in children and web_story.charlie.id not in children
    parents = text.split('id="parents"', 1)[1].split("</section>", 1)[0]
    assert "Nothing" in parents
    brenda = http.get(f"/artifacts/{web_story.brenda.id}").text
    assert a.id in brenda.split('id="parents"', 1)[1].split("</section>", 1)[0]


def test_artifact_api_and_metadata_yaml(web_story: Story, http: httpx.Client):
    a = web_story.andy
    body = http.get(f"/api/artifacts/{a.id}").json()
    assert body["id"] == a.id and body["info"]["stratification"] == "new-cool-method"
    assert {f["path"]: f["sha256"] for f in body["files"]} == \
        {n: f.sha256 for n, f in a.files.items()}
    assert [c["id"] for c in body["children"]] == [web_story.brenda.id]
    assert {entry["name"] for entry in body["logs"]} == set(a.logs)
    raw = http.get(f"/artifacts/{a.id}/metadata.yaml")
    assert raw.status_code == 200 and "attachment" in raw.headers["content-disposition"]
    assert raw.content == dump_metadata(a.metadata)


def test_the_file_list_shows_empty_directories(lake: Lake, serve: Any, tmp_path: Path):
    a = lake.save([str(make_tree(tmp_path / "tree"))], based_on=[])
    plain = put_artifact(lake, user="andy", files={"only.txt": b"x"})  # no dirs key
    hostile = put_artifact(lake, user="andy", files={"f.txt": b"x"})
    lake.catalogue.upsert({**hostile, "dirs": ["ok/empty", "../../etc"]})
    server = serve(lake)
    body = httpx.get(f"{server.url}/api/artifacts/{a.id}").json()
    assert body["dirs"] == expected_dirs("tree") and len(body["files"]) == len(FILES)
    page = httpx.get(f"{server.url}/artifacts/{a.id}").text
    files = page.split('id="files"', 1)[1].split("</section>", 1)[0]
    for d in expected_dirs("tree"):
        assert f'<span class="dir">{esc(d)}/</span>' in files
    assert "3 empty directories" in page
    assert httpx.get(f"{server.url}/artifacts/{a.id}/files/tree/c").status_code == 404
    assert httpx.get(f"{server.url}/api/artifacts/{plain['id']}").json()["dirs"] == []
    # names save would not write are not listed (the raw metadata.yaml still shows them)
    page = httpx.get(f"{server.url}/artifacts/{hostile['id']}").text
    files = page.split('id="files"', 1)[1].split("</section>", 1)[0]
    facts = page.split("<dl", 1)[1].split("</dl>", 1)[0]
    assert 'class="dir"' not in files and "empty director" not in facts
    assert httpx.get(f"{server.url}/api/artifacts/{hostile['id']}").json()["dirs"] == []


def test_unique_prefix_redirects_to_the_full_id(web_story: Story, http: httpx.Client):
    a = web_story.charlie
    r = http.get(f"/artifacts/{a.id[:22]}/lineage", params={"depth": "3"})
    assert r.status_code == 307
    assert r.headers["location"] == f"/artifacts/{a.id}/lineage?depth=3"


def test_file_downloads_stream_verified_bytes(web_story: Story, http: httpx.Client):
    a = web_story.andy
    r = http.get(f"/artifacts/{a.id}/files/train.txt")
    assert r.status_code == 200
    assert r.content == b"x,y\n1,2\n3,4\n"
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith('attachment; filename="train.txt"')
    assert r.headers["x-content-type-options"] == "nosniff"
    assert int(r.headers["content-length"]) == 12
    head = http.head(f"/artifacts/{a.id}/files/train.txt")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "12"
    big = http.get(f"/artifacts/{web_story.brenda.id}/files/model.pth")
    assert big.content == b"weights " * 1000


def test_tampered_bytes_are_never_delivered_whole(web_story: Story, http: httpx.Client,
                                                  lake_env: dict[str, str]):
    a = web_story.andy
    path = Path(lake_env["ELLIPTIO_STORE"][len("file://"):]) / a.files["test.txt"].object
    path.chmod(0o644)
    path.write_bytes(b"x,y\n6,6\n")  # same size, other bytes
    # a file of one chunk is checked whole before the response starts: the error page
    # (a longer one is cut short: tests/test_t7_web_hostile.py)
    r = http.get(f"/artifacts/{a.id}/files/test.txt")
    assert r.status_code == 502 and b"6,6" not in r.content
    assert "does not match its recorded sha256" in alert_text(r.text)


def test_downloads_refuse_path_traversal(web_story: Story, http: httpx.Client, lake: Lake,
                                         lake_env: dict[str, str]):
    a, b = web_story.andy, web_story.brenda
    secret = Path(lake_env["ELLIPTIO_CATALOGUE"][len("sqlite:///"):])
    attempts = [
        f"/artifacts/{a.id}/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/catalogue.sqlite",
        f"/artifacts/{a.id}/files/..%2f..%2f..%2f..%2f..%2fcatalogue.sqlite",
        f"/artifacts/{a.id}/files//etc/passwd",
        f"/artifacts/{a.id}/files/.eio/metadata.yaml",
        f"/artifacts/{b.id}/files/train.txt",  # a file of another artifact
        f"/artifacts/{a.id}/logs/..%2f..%2fmetadata/download",
    ]
    for url in attempts:
        r = http.get(url)
        assert r.status_code == 404, url
        assert b"SQLite format" not in r.content and b"root:" not in r.content
    # metadata naming an object outside the layout (hand-edited or hostile) is not served
    md = put_artifact(lake, files={"data.bin": secret.read_bytes()[:100]},
                      objects={"data.bin": "../../catalogue.sqlite"})
    r = http.get(f"/artifacts/{md['id']}/files/data.bin")
    assert r.status_code == 502 and b"SQLite format" not in r.content
    assert "not a file key of the store layout" in alert_text(r.text)
    # listed with the reason, but neither a download link nor a URL of the object
    page = http.get(f"/artifacts/{md['id']}")
    files = page.text.split('id="files"')[1].split("</section>")[0]
    assert page.status_code == 200 and "refused, not served" in files
    assert "/files/data.bin" not in files and "file://" not in files
    body = http.get(f"/api/artifacts/{md['id']}").json()
    assert body["files"][0]["url"] is None
    assert "not a file key" in body["files"][0]["refused"]


# -- logs -------------------------------------------------------------------------------------
def test_log_page_and_download(web_story: Story, http: httpx.Client):
    a = web_story.andy
    freeze = a.logs.pip_freeze.read_bytes().decode()
    r = http.get(f"/artifacts/{a.id}/logs/pip_freeze")
    assert r.status_code == 200
    first = next(line for line in freeze.splitlines() if line.strip())
    assert esc(first) in r.text
    d = http.get(f"/artifacts/{a.id}/logs/pip_freeze/download")
    assert d.content == freeze.encode()
    assert 'filename="pip_freeze.txt"' in d.headers["content-disposition"]
    missing = http.get(f"/artifacts/{a.id}/logs/nope")
    assert missing.status_code == 404 and "pip_freeze" in alert_text(missing.text)


def test_git_diff_is_highlighted(lake: Lake, serve: Any):
    diff = b"diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-old\n+new\n"
    md = put_artifact(lake, user="andy", logs={"git_diff": diff})
    server = serve(lake)
    r = httpx.get(f"{server.url}/artifacts/{md['id']}/logs/git_diff")
    assert r.status_code == 200
    assert '<span class="d-add">+new</span>' in r.text
    assert '<span class="d-del">-old</span>' in r.text
    assert '<span class="d-hunk">@@ -1 +1 @@</span>' in r.text


# -- lineage ----------------------------------------------------------------------------------
def test_lineage_api_and_page(web_story: Story, http: httpx.Client):
    s = web_story
    body = http.get(f"/api/artifacts/{s.brenda.id}/lineage", params={"depth": "1"}).json()
    layers = {n["id"]: n["layer"] for n in body["nodes"]}
    assert layers == {s.andy.id: -1, s.brenda.id: 0, s.charlie.id: 1}
    assert {(e["parent"], e["child"]) for e in body["edges"]} == \
        {(s.andy.id, s.brenda.id), (s.brenda.id, s.charlie.id)}
    up = http.get(f"/api/artifacts/{s.charlie.id}/lineage",
                  params={"depth": "1", "direction": "parents"}).json()
    assert {n["id"] for n in up["nodes"]} == {s.brenda.id, s.charlie.id}
    two = http.get(f"/api/artifacts/{s.charlie.id}/lineage", params={"depth": "2"}).json()
    assert {n["id"]: n["layer"] for n in two["nodes"]}[s.andy.id] == -2
    page = http.get(f"/artifacts/{s.andy.id}/lineage")
    assert page.status_code == 200
    svg = page.text.split('<svg id="graph"', 1)[1].split("</svg>", 1)[0]
    nodes = re.findall(r'class="node (\w+)" data-id="([0-9a-z]{26})"', svg)
    assert sorted(nodes) == sorted([("centre", s.andy.id), ("descendant", s.brenda.id),
                                    ("descendant", s.charlie.id)])
    assert svg.count('class="edge"') == 2
    listing = page.text.split('id="lineage-list"', 1)[1]
    assert s.brenda.id in listing and s.charlie.id in listing
    bad = http.get(f"/artifacts/{s.andy.id}/lineage", params={"depth": "0"})
    assert bad.status_code == 400 and "depth" in alert_text(bad.text)


def test_lineage_shows_parents_missing_from_the_catalogue(lake: Lake, serve: Any):
    ghost = new_id()
    md = put_artifact(lake, user="andy", based_on=[ghost])
    server = serve(lake)
    body = httpx.get(f"{server.url}/api/artifacts/{md['id']}/lineage").json()
    nodes = {n["id"]: n for n in body["nodes"]}
    assert nodes[ghost]["missing"] is True and nodes[ghost]["layer"] == -1
    page = httpx.get(f"{server.url}/artifacts/{md['id']}").text
    assert "not in the catalogue" in page


def test_lineage_graph_layout_of_a_diamond(lake: Lake, serve: Any):
    root = put_artifact(lake, user="andy")
    left = put_artifact(lake, user="andy", based_on=[root["id"]])
    right = put_artifact(lake, user="andy", based_on=[root["id"]])
    join = put_artifact(lake, user="andy", based_on=[left["id"], right["id"]])
    from elliptio.web import data
    from elliptio.web.graph import layout

    g = data.lineage(lake, lake.get(root["id"]), 3)
    assert {n.id: n.layer for n in g.nodes.values()} == {
        root["id"]: 0, left["id"]: 1, right["id"]: 1, join["id"]: 2}
    drawing = layout(g)
    pos = {n.id: (n.x, n.y) for n in drawing.nodes}
    assert pos[root["id"]][0] < pos[left["id"]][0] == pos[right["id"]][0] < pos[join["id"]][0]
    assert pos[left["id"]][1] != pos[right["id"]][1]
    assert len(drawing.edges) == 4


# -- errors ---------------------------------------------------------------------------------
def test_not_found_pages(web_story: Story, http: httpx.Client):
    unknown = new_id()
    for url in [f"/artifacts/{unknown}", "/artifacts/not-an-id", "/no/such/page",
                f"/artifacts/{web_story.andy.id}/files/nope.txt"]:
        r = http.get(url)
        assert r.status_code == 404, url
        assert "<h1>Not found</h1>" in r.text and "Traceback" not in r.text
    assert unknown in alert_text(http.get(f"/artifacts/{unknown}").text)
    api = http.get(f"/api/artifacts/{unknown}")
    assert api.status_code == 404 and unknown in api.json()["error"]


def test_catalogue_down_is_a_clear_page(tmp_path: Path, serve: Any):
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not a database, it was overwritten" * 100)
    lake = Lake(Settings.load(store=f"file://{tmp_path}/store",
                              catalogue=f"sqlite:///{broken}", user="andy"))
    server = serve(lake)
    for url in ["/", "/?q=user=andy", f"/artifacts/{new_id()}"]:
        r = httpx.get(server.url + url)
        assert r.status_code == 503, url
        assert "The catalogue is not available" in r.text
        assert "corrupt" in alert_text(r.text)
        assert "Traceback" not in r.text and 'File "' not in r.text
    api = httpx.get(server.url + "/api/search")
    assert api.status_code == 503 and "corrupt" in api.json()["error"]
    health = httpx.get(server.url + "/api/health")
    assert health.status_code == 503 and health.json()["catalogue"]["ok"] is False
    lake.close()


class UnreachableStore(LocalStore):
    """A store whose reads fail the way an unreachable S3 endpoint does after retries."""

    def open(self, key: str) -> Any:
        raise StorageError("s3://lake: could not connect to the endpoint (after 5 attempts)")

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        raise StorageError("s3://lake: could not connect to the endpoint (after 5 attempts)")


def test_store_down_is_a_clear_page(web_story: Story, serve: Any, lake_env: dict[str, str]):
    store = UnreachableStore(lake_env["ELLIPTIO_STORE"])
    catalogue = SQLiteCatalogue(lake_env["ELLIPTIO_CATALOGUE"])
    lake = Lake(Settings.load(), store=store, catalogue=catalogue)
    server = serve(lake)
    a = web_story.andy
    # the artifact page needs only the catalogue
    assert httpx.get(f"{server.url}/artifacts/{a.id}").status_code == 200
    for url in [f"/artifacts/{a.id}/files/train.txt", f"/artifacts/{a.id}/logs/pip_freeze",
                f"/artifacts/{a.id}/logs/pip_freeze/download"]:
        r = httpx.get(server.url + url)
        assert r.status_code == 503, url
        assert "The store is not available" in r.text
        assert "could not connect" in alert_text(r.text) and "Traceback" not in r.text
    lake.close()


class S3NamedStore(LocalStore):
    """A local store that names its objects the way an S3 store does."""

    def s3_url(self, key: str) -> str | None:
        return f"s3://lake-bucket/prefix/{key}"


def test_s3_urls_have_copy_buttons(web_story: Story, serve: Any, lake_env: dict[str, str]):
    lake = Lake(Settings.load(), store=S3NamedStore(lake_env["ELLIPTIO_STORE"]),
                catalogue=SQLiteCatalogue(lake_env["ELLIPTIO_CATALOGUE"]))
    server = serve(lake)
    a = web_story.andy
    url = f"s3://lake-bucket/prefix/{a.files['train.txt'].object}"
    page = httpx.get(f"{server.url}/artifacts/{a.id}").text
    assert f'<code class="url">{esc(url)}</code> <button type="button" class="copy" ' \
           f'data-copy="{esc(url)}"' in page
    body = httpx.get(f"{server.url}/api/artifacts/{a.id}").json()
    assert {f["path"]: f["s3_url"] for f in body["files"]}["train.txt"] == url
    lake.close()


class BuggyCatalogue(SQLiteCatalogue):
    def find(self, query: Any) -> Any:
        raise RuntimeError("bug with a secret detail: /srv/private/path")


def test_a_bug_is_a_plain_500_page(tmp_path: Path, serve: Any):
    lake = Lake(Settings.load(store=f"file://{tmp_path}/store", user="andy"),
                catalogue=BuggyCatalogue(f"sqlite:///{tmp_path}/c.sqlite"))
    server = serve(lake)
    r = httpx.get(server.url + "/")
    assert r.status_code == 500 and "Internal error" in r.text
    assert "secret detail" not in r.text and "Traceback" not in r.text
    api = httpx.get(server.url + "/api/search")
    assert api.status_code == 500 and "secret" not in api.text
    lake.close()


# -- security -----------------------------------------------------------------------------
def test_security_headers_everywhere(web_story: Story, http: httpx.Client):
    a = web_story.andy
    for url in ["/", "/api/search", f"/artifacts/{a.id}", f"/artifacts/{a.id}/files/train.txt",
                f"/artifacts/{a.id}/lineage", "/static/eio.js", f"/artifacts/{new_id()}",
                "/?q=bogus"]:
        r = http.get(url)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp, url
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
    page = http.get(f"/artifacts/{a.id}").text
    # nothing inline that the CSP would have to allow
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert " style=" not in page and not re.search(r"\son[a-z]+=", page)


def test_no_write_endpoints(web_story: Story, http: httpx.Client):
    a = web_story.andy
    urls = ["/", "/api/search", f"/artifacts/{a.id}", f"/api/artifacts/{a.id}",
            f"/artifacts/{a.id}/files/train.txt", f"/artifacts/{a.id}/lineage",
            "/static/eio.js", f"/artifacts/{a.id}/metadata.yaml"]
    for url in urls:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            r = http.request(method, url, content=b"x")
            assert r.status_code == 405, (method, url)
            assert "read-only" in r.text
    assert a.files["train.txt"].read_bytes() == b"x,y\n1,2\n3,4\n"
    assert http.get("/api/search").json()["total"] == 6


PAYLOADS = [
    "<script>window.__pwned=1;alert('info')</script>",
    '"><img src=x onerror="window.__pwned=2;alert(2)">',
    "</textarea></pre></code><svg onload=alert(3)>",
    "javascript:alert(4)",
    "{{ 7*7 }}{% raw %}",
]


def xss_artifacts(lake: Lake, work: Path) -> tuple[Any, dict[str, Any]]:
    """A saved artifact and a hand-crafted one, with payloads wherever metadata goes."""
    saved = save_as(
        lake, "andy",
        {'<img src=x onerror="window.__pwned=5;alert(5)">.txt': b"a\n",
         "dir/<svg onload=alert(6)>.csv": b"b\n", '";alert(7);".txt': b"c\n"},
        work, based_on=[],
        tags=["<img src=x onerror=window.__pwned=8>", "x' onmouseover='alert(9)"],
        info={"type": "<svg onload=alert(10)>", "note": PAYLOADS[0],
              "url": PAYLOADS[3], "tmpl": PAYLOADS[4],
              "<b onmouseover=alert(11)>key": PAYLOADS[1],
              "nested": {"deep": [PAYLOADS[2], {"x": "<iframe srcdoc=alert(12)>"}]}})
    crafted = put_artifact(
        lake, user="<img src=x onerror=alert(13)>", based_on=[saved.id],
        info={"type": "<img src=x onerror=alert(14)>", "multi": "line1\n<script>alert(15)"
              "</script>"},
        tags=["<script>alert(16)</script>"],
        files={"<b>bold</b>.txt": b"z\n"},
        logs={"pip_freeze": b"<script>window.__pwned=17;alert(17)</script>\n"
                            b"<img src=x onerror=alert(18)>\n"})
    return saved, crafted


def test_metadata_payloads_are_escaped_in_html_and_json(lake: Lake, serve: Any,
                                                        tmp_path: Path):
    saved, crafted = xss_artifacts(lake, tmp_path / "work")
    server = serve(lake)
    urls = ["/", "/?text=alert", f"/artifacts/{saved.id}", f"/artifacts/{crafted['id']}",
            f"/artifacts/{saved.id}/lineage", f"/artifacts/{crafted['id']}/lineage",
            f"/artifacts/{crafted['id']}/logs/pip_freeze"]
    raw_markers = ["<script>alert", "<script>window", "<img src=x", "<svg onload",
                   "<iframe", "<b onmouseover", "<b>bold", "onmouseover='alert"]
    for url in urls:
        r = httpx.get(server.url + url)
        assert r.status_code == 200, url
        for marker in raw_markers:
            assert marker not in r.text, (url, marker)
    page = httpx.get(f"{server.url}/artifacts/{saved.id}").text
    assert esc(PAYLOADS[0]) in page
    assert esc("{{ 7*7 }}{% raw %}") in page
    body = httpx.get(f"{server.url}/api/artifacts/{saved.id}").json()
    assert body["info"]["note"] == PAYLOADS[0]
    # downloads of a file named with markup are attachments with a tame name
    name = '<img src=x onerror="window.__pwned=5;alert(5)">.txt'
    d = httpx.get(f"{server.url}/artifacts/{saved.id}/files/{quote(name)}")
    assert d.status_code == 200 and d.content == b"a\n"
    disposition = d.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="<img src=x onerror=_window.__pwned=5_')
    assert disposition.count('"') == 2


# -- access token and reverse proxy ------------------------------------------------------
def test_access_token(web_story: Story, serve: Any):
    server = serve(web_story.lake, token="s3cret-token")
    base = server.url
    r = httpx.get(base + "/")
    assert r.status_code == 401 and 'name="token"' in r.text
    assert httpx.get(base + "/api/search").status_code == 401
    assert httpx.get(base + "/", params={"token": "wrong"}).status_code == 401
    assert httpx.get(base + "/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.get(base + "/api/search", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and ok.json()["total"] == 6
    # static files need no token: the token page is styled
    assert httpx.get(base + "/static/eio.css").status_code == 200
    # a link with ?token= sets a cookie and drops the token from the URL
    r = httpx.get(base + "/", params={"token": "s3cret-token", "user": "andy"})
    assert r.status_code == 303 and r.headers["location"] == "/?user=andy"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "s3cret" not in cookie
    with httpx.Client(base_url=base) as c:
        c.get("/", params={"token": "s3cret-token"})
        page = c.get("/", params={"user": "andy"})
        assert page.status_code == 200 and web_story.andy.id in page.text
    # the redirect stays on this site even for a path starting with "//"
    r = httpx.get(f"http://127.0.0.1:{server.port}//evil.example/x",
                  params={"token": "s3cret-token"})
    assert r.status_code == 303 and r.headers["location"] == "/evil.example/x"
    forged = httpx.get(base + "/", headers={"Cookie": "eio_token=forged"})
    assert forged.status_code == 401 and "not valid" in alert_text(forged.text)


def test_root_path_behind_a_reverse_proxy(web_story: Story, serve: Any):
    server = serve(web_story.lake, root_path="eio/")  # normalised to /eio
    port = server.port
    a = web_story.andy
    # the proxy may strip the prefix or pass it on: both work, links carry it
    for base in (f"http://127.0.0.1:{port}/eio", f"http://127.0.0.1:{port}"):
        r = httpx.get(base + "/", params={"q": STORY_QUERY})
        assert r.status_code == 200
        assert f'href="/eio/artifacts/{a.id}"' in r.text
        assert 'src="/eio/static/eio.js"' in r.text
        assert httpx.get(base + "/static/eio.js").status_code == 200
    d = httpx.get(f"http://127.0.0.1:{port}/eio/artifacts/{a.id}/files/train.txt")
    assert d.content == b"x,y\n1,2\n3,4\n"
    redirect = httpx.get(f"http://127.0.0.1:{port}/eio/artifacts/{a.id[:22]}")
    assert redirect.headers["location"] == f"/eio/artifacts/{a.id}"


# -- the command --------------------------------------------------------------------------
def test_eio_web_command_serves_and_stops_cleanly(web_story: Story, lake_env: dict[str, str]):
    port = free_port()
    env = {**os.environ, **lake_env, "PYTHONWARNINGS": "always::ResourceWarning"}
    proc = subprocess.Popen([sys.executable, "-m", "elliptio", "web", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/search",
                              params={"q": STORY_QUERY})
                break
            except httpx.ConnectError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "eio web did not start"
                time.sleep(0.1)
        assert [i["id"] for i in r.json()["items"]] == [web_story.andy.id]
        httpx.get(f"http://127.0.0.1:{port}/", params={"token": "not-logged"})
    finally:
        proc.send_signal(signal.SIGTERM)  # our own child, by pid
        out, err = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (so the exit is
    # "killed by SIGTERM", which systemd counts as clean)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Finished server process" in err.decode()
    assert f"http://127.0.0.1:{port}/" in out.decode()
    log = err.decode()
    assert "GET /api/search" in log and "not-logged" not in log and "token=%2A%2A%2A" in log
    assert "ResourceWarning" not in log


def test_server_shutdown_closes_the_lake(lake: Lake, monkeypatch: pytest.MonkeyPatch):
    """The server's worker threads open the catalogue's connections; when the server shuts
    down (ASGI lifespan), the lake is closed, so none is left open."""
    from elliptio.web import create_app

    closes: list[bool] = []
    real_close = lake.close
    monkeypatch.setattr(lake, "close", lambda: closes.append(True) or real_close())
    server = LiveServer(create_app(lake), lifespan="on").start()
    try:
        assert httpx.get(f"{server.url}/api/health").status_code == 200
        assert lake.catalogue._connections.open_count() >= 1  # type: ignore[attr-defined]
        assert closes == []
    finally:
        server.stop()
    assert closes == [True]
    assert lake.catalogue._connections.open_count() == 0  # type: ignore[attr-defined]


def test_api_json_is_plain_json(web_story: Story, http: httpx.Client):
    body = http.get(f"/api/artifacts/{web_story.andy.id}").content
    parsed = json.loads(body)
    assert parsed["snippet"].endswith(f'eio.load("{web_story.andy.id}")')


# -- reproduce and compare (issue 17) ----------------------------------------------------
HOSTILE_PROVENANCE = {
    "git": {"present": True, "commit": "<script>alert(20)</script>", "branch": "<b>main</b>",
            "remote_url": "https://andy:hunter2secret@git.example.com/<img src=x>.git",
            "dirty": True},
    "python": {"version": "3.11.7<svg onload=alert(21)>", "implementation": "CPython"},
    "platform": {"description": "<iframe srcdoc=alert(22)>"},
    "host": "<img src=x onerror=alert(23)>",
    "argv": ["train.py", "--note", "<script>alert(24)</script>", "it's"],
    "cwd": "/home/<b onmouseover=alert(25)>",
    "conda": {"present": True, "name": "<script>alert(26)</script>"},
}


def test_the_reproduce_section_and_its_json_twin(web_story: Story, lake: Lake,
                                                 http: httpx.Client):
    brenda = web_story.brenda
    body = http.get(f"/api/artifacts/{brenda.id}").json()
    r = body["reproduce"]
    assert [c["text"] for c in r["commands"]] == [
        f"eio reproduce {brenda.id} DIR", f"eio env diff {brenda.id}",
        f"eio diff {web_story.andy.id} {brenda.id}"]
    prov = brenda.provenance
    assert r["python"].endswith(prov["python"]["version"])
    assert r["host"] == prov["host"] and r["cwd"] == prov["cwd"]
    assert r["git"]["present"] is prov["git"]["present"]
    # the type is among the tags; pandas reads a file by its eio:// URL
    andy = http.get(f"/api/artifacts/{web_story.andy.id}").json()
    assert andy["query_tags"] == ["dataset", "dataset_list"] and andy["tags"] == ["dataset"]
    assert andy["url_snippet"] == (f'import pandas\ndf = pandas.read_csv('
                                   f'"eio://{web_story.andy.id}/{andy["files"][0]["path"]}")')
    page = http.get(f"/artifacts/{brenda.id}").text
    assert 'id="reproduce"' in page and f'data-copy="eio env diff {brenda.id}"' in page
    assert 'class="tag type-tag"' in page
    assert f'href="/compare/{web_story.andy.id}/{brenda.id}"' in page

    # every recorded value is hostile: escaped in the page, as it is in the JSON; a remote
    # URL's credentials are not shown even when the metadata holds them
    crafted = put_artifact(lake, provenance=HOSTILE_PROVENANCE, based_on=[brenda.id],
                           files={"a'\"b.parquet": b"x"})
    page = http.get(f"/artifacts/{crafted['id']}").text
    for marker in ("<script>alert", "<b>main", "<img src=x", "<svg onload", "<iframe",
                   "<b onmouseover"):
        assert marker not in page, marker
    # (the raw metadata and provenance tree show what the metadata holds, as they always did)
    section = page[page.index('<section id="reproduce">'):]
    section = section[:section.index("</section>")]
    assert "hunter2secret" not in section
    assert esc("https://***@git.example.com/<img src=x>.git") in section
    assert esc(shlex_join(HOSTILE_PROVENANCE["argv"])) in page
    r = http.get(f"/api/artifacts/{crafted['id']}").json()["reproduce"]
    assert r["git"]["remote"] == "https://***@git.example.com/<img src=x>.git"
    assert r["command"] == shlex_join(HOSTILE_PROVENANCE["argv"])
    assert r["conda"] == "<script>alert(26)</script>" and r["git"]["dirty"] is True
    snippet = http.get(f"/api/artifacts/{crafted['id']}").json()["url_snippet"]
    assert snippet == ('import pandas\ndf = pandas.read_parquet('
                       f'"eio://{crafted["id"]}/a\'\\"b.parquet")')
    # values of the wrong shape are not shown as if they were recorded
    odd = put_artifact(lake, provenance={"git": "yes", "python": ["3"], "argv": "x y"})
    r = http.get(f"/api/artifacts/{odd['id']}").json()["reproduce"]
    assert r["git"]["present"] is False and r["python"] is None and r["command"] is None
    assert http.get(f"/artifacts/{odd['id']}").status_code == 200


def shlex_join(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def test_compare_page_and_its_json_twin(web_story: Story, http: httpx.Client):
    andy, brenda = web_story.andy, web_story.brenda
    c = http.get(f"/api/compare/{andy.id}/{brenda.id}").json()
    assert c["a"]["id"] == andy.id and c["b"]["id"] == brenda.id
    assert c["diff"] == json.loads(json.dumps(andy.diff(brenda).as_dict()))
    d = c["diff"]
    assert {f["path"] for f in d["files"]["added"]} == {"model.pth"}
    assert {f["path"] for f in d["files"]["removed"]} == {"train.txt", "test.txt"}
    assert d["based_on"]["added"] == [andy.id] and d["tags"]["removed"] == ["dataset"]
    assert {"key": "type", "a": "dataset_list", "b": "model"} in d["info"]["changed"]
    facts = {f["label"]: f for f in c["facts"]}
    assert facts["user"] == {"label": "user", "a": "andy", "b": "brenda", "differs": True}
    assert facts["python"]["differs"] is False
    page = http.get(f"/compare/{andy.id}/{brenda.id}")
    assert page.status_code == 200
    for text in ("model.pth", andy.files["train.txt"].sha256, "stratification",
                 f"eio diff {andy.id} {brenda.id}", f'href="/compare/{brenda.id}/{andy.id}"'):
        assert text in page.text, text
    # the same artifact twice: nothing differs
    same = http.get(f"/api/compare/{andy.id}/{andy.id}").json()["diff"]
    assert same["differs"] is False
    assert "Nothing differs" in http.get(f"/compare/{andy.id}/{andy.id}").text
    # unique prefixes redirect to the full ids, an unknown id is a 404 in either form
    r = http.get(f"/compare/{andy.id[:14]}/{brenda.id}", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == f"/compare/{andy.id}/{brenda.id}"
    r = http.get(f"/api/compare/{andy.id}/{brenda.id[:14]}", follow_redirects=False)
    assert r.headers["location"] == f"/api/compare/{andy.id}/{brenda.id}"
    assert http.get(f"/compare/{andy.id}/0000000000zzzzzzzzzzzzzzzz").status_code == 404
    r = http.get(f"/api/compare/nope/{andy.id}")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    # the lineage list links each artifact to the comparison with its parent
    lineage = http.get(f"/artifacts/{andy.id}/lineage?depth=2").text
    assert f'href="/compare/{andy.id}/{brenda.id}"' in lineage
    assert f'href="/compare/{brenda.id}/{web_story.charlie.id}"' in lineage


def test_compare_escapes_hostile_metadata(lake: Lake, serve: Any, tmp_path: Path):
    saved, crafted = xss_artifacts(lake, tmp_path / "work")
    server = serve(lake)
    raw_markers = ["<script>alert", "<script>window", "<img src=x", "<svg onload",
                   "<iframe", "<b onmouseover", "<b>bold", "onmouseover='alert"]
    for a, b in ((saved.id, crafted["id"]), (crafted["id"], saved.id)):
        r = httpx.get(f"{server.url}/compare/{a}/{b}")
        assert r.status_code == 200
        for marker in raw_markers:
            assert marker not in r.text, marker
        assert esc('<img src=x onerror="window.__pwned=5;alert(5)">.txt') in r.text
        body = httpx.get(f"{server.url}/api/compare/{a}/{b}").json()
        assert body["a"]["id"] == a
    lineage = httpx.get(f"{server.url}/artifacts/{saved.id}/lineage").text
    assert f'href="/compare/{saved.id}/{crafted["id"]}"' in lineage
