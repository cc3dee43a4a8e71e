"""Readers re-check, on the web page: rows an older catalogue holds that break the store's
rules get the "Refused" error page (and their JSON twin says why), never bytes; substituted
store bytes are never delivered whole; a log whose bytes do not match is not shown
(tests/fixtures/hostile.py plants them)."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
import pytest

from tests.fixtures.hostile import FINE, LOG_RECORDED, LOG_STORED, plant


def alert_text(page: str) -> str:
    m = re.search(r'role="alert"[^>]*>(.*?)</p>', page, re.S)
    return html.unescape(m.group(1)) if m else ""


@pytest.fixture
def hostile(lake, serve, tmp_path) -> tuple[Any, httpx.Client]:
    h = plant(lake, tmp_path / "work")
    server = serve(lake)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield h, client


def test_refused_files_get_the_error_page_never_bytes(hostile):
    h, http = hostile
    aid = h.planted["id"]
    cases = {  # URL -> why it is refused
        f"/artifacts/{aid}/files/..%2F..%2Fx.sh": "contains '..'",
        f"/artifacts/{aid}/files//abs/path/x.sh": "is absolute",
        f"/artifacts/{aid}/files/stolen.yaml": "inside an artifact's .eio/",
        f"/artifacts/{aid}/files/future.txt": "not older than",
        f"/artifacts/{h.usurper['id']}/files/claimed.txt": "is not its day, user and id",
    }
    for url, why in cases.items():
        r = http.get(url)
        assert r.status_code == 502, url
        assert r.headers["content-type"].startswith("text/html"), url
        assert "Refused" in r.text and why in alert_text(r.text), (url, alert_text(r.text))
        for leaked in (b"pwned", b"elliptio: 1", b"andy's own bytes", b"mallory's"):
            assert leaked not in r.content, url
    fine = http.get(f"/artifacts/{aid}/files/fine.txt")  # the innocent file beside them
    assert fine.status_code == 200 and fine.content == FINE

    # the artifact page and its JSON twin list them with the reason, without a URL
    body = http.get(f"/api/artifacts/{aid}").json()
    by_path = {f["path"]: f for f in body["files"]}
    assert by_path["fine.txt"]["refused"] is None and by_path["fine.txt"]["url"]
    for path in ("../../x.sh", "/abs/path/x.sh", "stolen.yaml", "future.txt"):
        assert by_path[path]["refused"] and by_path[path]["url"] is None, path
        assert by_path[path]["s3_url"] is None, path
    page = http.get(f"/artifacts/{aid}").text
    files = page.split('id="files"', 1)[1].split("</section>", 1)[0]
    assert files.count("refused, not served") == 4
    assert files.count('class="download"') == 1  # fine.txt's link only
    assert body["logs"][0]["refused"] is None  # its record is fine; its bytes are not


def test_substituted_bytes_are_never_delivered_whole(hostile):
    h, http = hostile
    # one chunk: checked before the response starts, so the error page
    r = http.get(f"/artifacts/{h.subst.id}/files/small.txt")
    assert r.status_code == 502 and h.small_stored not in r.content
    assert "does not match its recorded sha256" in alert_text(r.text)
    # longer: streamed, and cut short before the last chunk
    got = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("GET", f"/artifacts/{h.subst.id}/files/big.bin") as r:
            assert r.status_code == 200
            assert int(r.headers["content-length"]) == len(h.big_stored)
            for chunk in r.iter_raw():
                got += chunk
    assert len(got) < len(h.big_stored) and h.big_stored.startswith(bytes(got))


def test_a_log_whose_bytes_do_not_match_is_not_shown(hostile):
    h, http = hostile
    aid = h.planted["id"]
    r = http.get(f"/artifacts/{aid}/logs/pip_freeze")
    assert r.status_code == 502
    assert "do not match the recorded sha256" in alert_text(r.text)
    assert "6.6.6" not in r.text and "PyYAML" not in r.text
    d = http.get(f"/artifacts/{aid}/logs/pip_freeze/download")
    assert d.status_code == 502 and LOG_STORED not in d.content
    assert LOG_RECORDED not in d.content
