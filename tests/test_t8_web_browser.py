"""The web page in a real headless Chromium (Debian's, driven by Playwright).

Brenda's story: search by the form and by the query box, copy the id, open the artifact,
open a log, download a file. Andy's story: follow lineage two hops through the graph.
Hostile metadata executes nothing; errors are pages, not tracebacks. Screenshots of the
search results and of the lineage graph go to test-output/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.web import LiveServer, Story
from tests.test_t7_web_api import STORY_QUERY, xss_artifacts

pytestmark = pytest.mark.browser


def clipboard(page: Any) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def assert_clean(page: Any) -> None:
    """No dialog opened, nothing logged as an error (a CSP violation would be)."""
    assert page.dialogs == []
    assert page.console_errors == []


def result_ids(page: Any) -> list[str]:
    return page.locator("#results tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.id)")


def test_brenda_finds_copies_opens_and_reads(web_story: Story, web_server: LiveServer,
                                             page: Any, test_output: Path, tmp_path: Path):
    andy = web_story.andy
    page.goto(web_server.url + "/")
    # the form: user, last 10 days, a file glob, a tag glob
    page.fill("input[name=user]", "andy")
    page.fill("input[name=days]", "10")
    page.locator("input[name=file]").last.fill("*.txt")
    page.locator("input[name=tag]").last.fill("*dataset*")
    page.click("#search-button")
    page.wait_for_selector("#results")
    assert result_ids(page) == [andy.id]
    # the query is in the URL (only the filled fields) and shown in the CLI language
    assert "user=andy" in page.url and "days=10" in page.url and "q=" not in page.url
    assert page.text_content("#query-text") == STORY_QUERY
    row = page.locator(f"#results tr[data-id='{andy.id}']")
    assert "stratification: new-cool-method" in row.inner_text()
    assert "train.txt" in row.inner_text() and "dataset" in row.inner_text()
    page.screenshot(path=str(test_output / "web-search-results.png"), full_page=True)

    # copy the id with one click
    button = row.locator("button.copy")
    button.click()
    assert clipboard(page) == andy.id
    assert button.inner_text() == "copied"

    # open the artifact
    row.locator("a.id").click()
    page.wait_for_url(f"**/artifacts/{andy.id}")
    assert page.text_content("#artifact-id") == andy.id
    files = page.locator("#files").inner_text()
    assert "train.txt" in files and andy.files["train.txt"].sha256 in files
    assert "new-cool-method" in page.locator("#info").inner_text()
    page.locator("#raw summary").click()
    assert "stratification: new-cool-method" in page.locator("#raw-yaml").inner_text()
    page.locator(".snippet button.copy").click()
    assert clipboard(page) == f'import elliptio as eio\na = eio.load("{andy.id}")'

    # a file downloads with its bytes
    with page.expect_download() as info:
        page.locator("#files a.download", has_text="train.txt").click()
    target = tmp_path / "train.txt"
    info.value.save_as(target)
    assert target.read_bytes() == andy.files["train.txt"].read_bytes()

    # open a log
    page.locator("#logs a.log-view", has_text="pip_freeze").click()
    page.wait_for_url(f"**/artifacts/{andy.id}/logs/pip_freeze")
    shown = page.locator("#log-text").inner_text()
    expected = andy.logs.pip_freeze.read_text()
    assert shown.split() == expected.split()
    assert_clean(page)


def test_the_query_box_takes_the_cli_language(web_story: Story, web_server: LiveServer,
                                              page: Any):
    page.goto(web_server.url + "/")
    page.fill("#q", STORY_QUERY)
    page.press("#q", "Enter")
    page.wait_for_selector("#results")
    assert result_ids(page) == [web_story.andy.id]
    # a shared link opens the same search
    link = page.url
    page.goto("about:blank")
    page.goto(link)
    assert result_ids(page) == [web_story.andy.id]
    assert page.input_value("#q") == STORY_QUERY
    assert_clean(page)


def test_sorting_the_page_and_adding_fields(web_story: Story, web_server: LiveServer,
                                            page: Any):
    page.goto(web_server.url + "/")
    users = lambda: page.locator("#results tbody tr td:nth-child(2)").all_inner_texts()  # noqa: E731
    page.click("#results th button.sort:text('User')")
    assert users() == sorted(users()) and users()[0] == "andy" and users()[-1] == "dora"
    page.click("#results th button.sort:text('User')")
    assert users() == sorted(users(), reverse=True)
    # server-side order by creation time
    page.click("a.server-sort")
    page.wait_for_url("**order=oldest**")
    assert result_ids(page)[0] == web_story.andy.id
    # "+ condition" adds an info field; two conditions make one query
    page.goto(web_server.url + "/")
    page.locator("input[name=info]").last.fill("type=model")
    page.click("button.add[data-add=info]")
    assert page.locator("input[name=info]").count() == 2
    page.locator("input[name=info]").last.fill("epochs=10")
    page.click("#search-button")
    page.wait_for_selector("#results")
    assert result_ids(page) == [web_story.brenda.id]
    assert page.text_content("#query-text") == "info.type=model,info.epochs=10"
    assert_clean(page)


def test_andy_follows_lineage_two_hops(web_story: Story, web_server: LiveServer, page: Any,
                                       test_output: Path):
    s = web_story
    page.goto(f"{web_server.url}/artifacts/{s.andy.id}")
    page.click("#lineage-link")
    page.wait_for_url(f"**/artifacts/{s.andy.id}/lineage")
    graph = page.locator("svg#graph")
    nodes = graph.locator(".node")
    assert nodes.count() == 3  # depth 2: andy -> brenda -> charlie
    assert graph.locator(f".node.centre[data-id='{s.andy.id}']").count() == 1
    box = graph.bounding_box()
    assert box is not None and box["width"] > 500 and box["height"] > 50
    page.screenshot(path=str(test_output / "web-lineage-graph.png"), full_page=True)

    # hop 1: Brenda's model, centred
    graph.locator(f"a.node[data-id='{s.brenda.id}']").click()
    page.wait_for_url(f"**/artifacts/{s.brenda.id}/lineage**")
    assert page.locator(f"svg#graph .node.centre[data-id='{s.brenda.id}']").count() == 1
    assert page.locator(f"svg#graph .node.ancestor[data-id='{s.andy.id}']").count() == 1
    # hop 2: Charlie's evaluation report
    page.locator(f"svg#graph a.node[data-id='{s.charlie.id}']").click()
    page.wait_for_url(f"**/artifacts/{s.charlie.id}/lineage**")
    page.locator(f"svg#graph a.node.centre[data-id='{s.charlie.id}']").click()
    page.wait_for_url(f"**/artifacts/{s.charlie.id}")
    assert "charlie" == page.text_content("#a-user")
    assert "evaluation_report" in page.locator("dl.facts").inner_text()
    assert s.brenda.id in page.locator("#parents").inner_text()
    # the list fallback lists the same artifacts
    page.goto(f"{web_server.url}/artifacts/{s.andy.id}/lineage?depth=2")
    listing = page.locator("#lineage-list").inner_text()
    assert s.brenda.id in listing and s.charlie.id in listing
    assert_clean(page)


def test_hostile_metadata_executes_nothing(lake: Any, serve: Any, page: Any, tmp_path: Path):
    saved, crafted = xss_artifacts(lake, tmp_path / "work")
    server = serve(lake)
    page.add_init_script("window.__pwned = undefined;")
    urls = ["/", "/?text=alert", f"/artifacts/{saved.id}", f"/artifacts/{crafted['id']}",
            f"/artifacts/{saved.id}/lineage", f"/artifacts/{crafted['id']}/lineage",
            f"/artifacts/{crafted['id']}/logs/pip_freeze"]
    for url in urls:
        page.goto(server.url + url)
        page.wait_for_load_state("load")
        # hover and click what a user would, to give handlers a chance to fire
        for tag in page.locator(".tag").all()[:4]:
            tag.hover()
        injected = page.evaluate("""() => document.querySelectorAll(
            'img, iframe, object, embed, b, [onerror], [onload], [onmouseover], [srcdoc],'
            + ' script:not([src]), svg svg').length""")
        assert injected == 0, url
        assert page.evaluate("window.__pwned") is None, url
        assert page.evaluate("document.querySelectorAll('script').length") == 1, url
    # the payloads are there, as text
    page.goto(f"{server.url}/artifacts/{saved.id}")
    text = page.locator("body").inner_text()
    assert "<script>window.__pwned=1;alert('info')</script>" in text
    assert "{{ 7*7 }}{% raw %}" in text
    assert '<img src=x onerror="window.__pwned=5;alert(5)">.txt' in text
    page.goto(f"{server.url}/artifacts/{crafted['id']}/logs/pip_freeze")
    assert "<script>window.__pwned=17;alert(17)</script>" in page.inner_text("#log-text")
    assert_clean(page)


def test_error_pages_in_the_browser(web_story: Story, web_server: LiveServer, page: Any):
    response = page.goto(f"{web_server.url}/artifacts/0000000000zzzzzzzzzzzzzzzz")
    assert response.status == 404
    assert page.text_content("h1") == "Not found"
    page.goto(web_server.url + "/")
    page.fill("#q", "user=andy,since=a-while-ago")
    page.press("#q", "Enter")
    page.wait_for_selector("#query-error")
    assert "cannot read 'a-while-ago' as a time" in page.text_content("#query-error")
    assert page.input_value("#q") == "user=andy,since=a-while-ago"
    assert page.locator("form#search").count() == 1
    assert "Traceback" not in page.content()
    assert re.search(r"/\?q=user%3Dandy%2Csince%3Da-while-ago$", page.url)
    # a 404 and a 400 are not errors of the page's own scripts
    assert page.dialogs == []


def test_reproduce_section_and_compare_with_parent(web_story: Story, web_server: LiveServer,
                                                   page: Any, test_output: Path):
    """Brenda opens her model: the Reproduce section shows how it was made and the
    commands, each copied with one click; from the lineage list she compares it with
    Andy's dataset, its parent."""
    s = web_story
    page.goto(f"{web_server.url}/artifacts/{s.brenda.id}")
    section = page.locator("#reproduce")
    assert section.is_visible()
    text = section.inner_text()
    prov = s.brenda.provenance
    assert prov["python"]["version"] in text and prov["host"] in text
    assert prov["cwd"] in text
    if prov["git"]["present"]:
        assert prov["git"]["commit"] in page.text_content("#r-commit")
    commands = page.locator("#r-commands li")
    assert commands.count() == 3
    for i, expected in enumerate([f"eio reproduce {s.brenda.id} DIR",
                                  f"eio env diff {s.brenda.id}",
                                  f"eio diff {s.andy.id} {s.brenda.id}"]):
        row = commands.nth(i)
        assert row.locator("code.command").inner_text() == expected
        row.locator("button.copy").click()
        assert clipboard(page) == expected
    # the type is shown among the tags; pandas reads a file by its eio:// URL
    assert page.locator("#a-tags .type-tag").inner_text() == "model"
    page.locator(".url-snippet button.copy").click()
    assert clipboard(page) == ("import pandas\n"
                               f'df = pandas.read_csv("eio://{s.brenda.id}/model.pth")')
    page.screenshot(path=str(test_output / "web-reproduce.png"), full_page=True)

    # the lineage list: "compare with parent" opens the side-by-side comparison
    page.goto(f"{web_server.url}/artifacts/{s.brenda.id}/lineage")
    page.locator(f"#lineage-list li[data-id='{s.brenda.id}'] a.compare").click()
    page.wait_for_url(f"**/compare/{s.andy.id}/{s.brenda.id}")
    assert page.text_content("#c-a a.id") == s.andy.id
    assert page.text_content("#c-b a.id") == s.brenda.id
    files = page.locator("#c-files").inner_text()
    assert "model.pth" in files and "train.txt" in files and "added" in files
    assert s.andy.files["train.txt"].sha256 in files
    assert "stratification" in page.locator("#c-info").inner_text()
    assert "dataset" in page.locator("#c-tags").inner_text()
    assert page.locator("#c-env").is_visible()
    page.locator(".snippet button.copy").click()
    assert clipboard(page) == f"eio diff {s.andy.id} {s.brenda.id}"
    page.screenshot(path=str(test_output / "web-compare.png"), full_page=True)
    page.click("#swap-link")
    page.wait_for_url(f"**/compare/{s.brenda.id}/{s.andy.id}")
    # and from the artifact page's "Based on" list
    page.goto(f"{web_server.url}/artifacts/{s.charlie.id}")
    page.locator("#parents a.compare").click()
    page.wait_for_url(f"**/compare/{s.brenda.id}/{s.charlie.id}")
    assert_clean(page)


def test_hostile_metadata_on_the_compare_page_executes_nothing(lake: Any, serve: Any,
                                                               page: Any, tmp_path: Path):
    saved, crafted = xss_artifacts(lake, tmp_path / "work")
    server = serve(lake)
    page.add_init_script("window.__pwned = undefined;")
    for url in (f"/compare/{saved.id}/{crafted['id']}", f"/compare/{crafted['id']}/{saved.id}"):
        page.goto(server.url + url)
        page.wait_for_load_state("load")
        for tag in page.locator(".tag").all()[:4]:
            tag.hover()
        injected = page.evaluate("""() => document.querySelectorAll(
            'img, iframe, object, embed, b, [onerror], [onload], [onmouseover], [srcdoc],'
            + ' script:not([src]), svg').length""")
        assert injected == 0, url
        assert page.evaluate("window.__pwned") is None, url
    assert "<img src=x onerror=alert(13)>" in page.locator("#c-a, #c-b").all_inner_texts()[0] \
        + page.locator("#c-a, #c-b").all_inner_texts()[1]
    assert_clean(page)
