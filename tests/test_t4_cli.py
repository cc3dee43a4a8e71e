"""The eio command, run as a user would run it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.terminal import eio_on_a_terminal
from tests.fixtures.trees import EMPTY, FILES, expected_dirs, make_tree, tree_of


def eio(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "elliptio", *args], cwd=cwd, text=True,
                         capture_output=True, env=os.environ.copy(), timeout=60)
    if check and res.returncode != 0:
        raise AssertionError(f"eio {' '.join(args)} failed ({res.returncode}): {res.stderr}")
    return res


@pytest.fixture
def work(tmp_path: Path, lake_env) -> Path:
    d = tmp_path / "work"
    (d / "run42").mkdir(parents=True)
    (d / "train.txt").write_text("a,b\n1,2\n")
    (d / "test.txt").write_text("a,b\n3,4\n")
    (d / "run42/m.bin").write_bytes(b"m" * 1000)
    return d


def test_save_search_show_get_lineage_log(work, tmp_path):
    out = eio("save", "train.txt", "test.txt", "-t", "dataset_list", "-i",
              "stratification=new-cool-method", "-i", "epochs=10", "--tag", "dataset",
              "--json", cwd=work)
    a = json.loads(out.stdout)
    assert a["files"] == ["train.txt", "test.txt"] and a["user"] == "andy"
    assert a["info"] == {"type": "dataset_list", "stratification": "new-cool-method",
                         "epochs": 10}
    human = eio("save", "run42", "--based-on", a["id"][:10], "-t", "model", cwd=work).stdout
    assert human.startswith("saved ") and "1 file(s)" in human and a["id"] in human
    model_id = human.split()[1].rstrip(":")

    res = eio("search", "user=andy,since=10d,file=*.txt,tag=*dataset*", "--json")
    assert [x["id"] for x in json.loads(res.stdout)] == [a["id"]]
    table = eio("search", "--user", "andy").stdout
    assert "stratification=new-cool-method" in table and model_id in table
    assert eio("search", "--count", "--type", "model").stdout.strip() == "1"
    assert eio("search", "--info", "epochs=10", "--json").stdout.count('"id"') == 1
    assert "no artifacts match" in eio("search", "--user", "nobody").stderr
    # limit: 0 is no limit, as in Python, the web and the mount
    both = sorted([a["id"], model_id], reverse=True)
    for args in (["-n", "0"], ["limit=0"], ["limit=0", "-n", "1"]):
        assert [x["id"] for x in json.loads(eio("search", *args, "--json").stdout)] == both
    one = eio("search", "-n", "1")
    assert "(first 1; use --limit 0 for all)" in one.stderr
    bad = eio("search", "-n", "-2", check=False)
    assert bad.returncode == 2 and "limit must be 0 (no limit)" in bad.stderr

    show = eio("show", a["id"]).stdout
    assert "stratification: new-cool-method" in show and "train.txt" in show
    assert model_id in show  # used by
    assert json.loads(eio("show", a["id"], "--json").stdout)["id"] == a["id"]
    assert "id: " + a["id"] in eio("show", a["id"], "--yaml").stdout

    eio("get", model_id, "-o", str(tmp_path / "dl"))
    assert (tmp_path / "dl" / model_id / "run42/m.bin").read_bytes() == b"m" * 1000
    eio("download", a["id"], "train.txt", "-o", str(tmp_path / "dl2"))
    assert (tmp_path / "dl2" / a["id"] / "train.txt").exists()
    assert not (tmp_path / "dl2" / a["id"] / "test.txt").exists()

    tree = eio("lineage", model_id).stdout
    assert "based on:" in tree and a["id"] in tree
    kids = json.loads(eio("lineage", a["id"], "--children", "--json").stdout)
    assert [c["id"] for c in kids["children"]] == [model_id]

    assert "pip_freeze" in eio("log", a["id"]).stdout
    assert "PyYAML==" in eio("log", a["id"], "pip_freeze").stdout


SEED_SAVE = ('import elliptio as eio; a = eio.save(["train.txt", "test.txt"], '
             'info={"type": "dataset_list", "stratification": "new-cool-method"}); '
             'print(a.id)')


def test_eio_search_finds_the_seeds_untagged_dataset_by_its_type(work):
    """Andy saves as the seed does (no tags); ``eio search`` for ``tag=*dataset*`` finds
    it, in the query language and with the options, and shows the type."""
    aid = subprocess.run([sys.executable, "-c", SEED_SAVE], cwd=work, text=True, check=True,
                         capture_output=True, env=os.environ.copy(), timeout=60).stdout.strip()
    other = json.loads(eio("save", "train.txt", "-t", "model", "--json", cwd=work).stdout)
    assert other["id"] != aid
    res = eio("search", "user=andy,since=10d,file=*.txt,tag=*dataset*", "--json")
    (row,) = json.loads(res.stdout)
    assert row["id"] == aid and row["tags"] == [] and row["type"] == "dataset_list"
    opts = eio("search", "--user", "andy", "--since", "10d", "--file", "*.txt",
               "--tag", "*dataset*", "--json")
    assert [x["id"] for x in json.loads(opts.stdout)] == [aid]
    table = eio("search", "--tag", "dataset_list").stdout
    assert aid in table and "stratification=new-cool-method" in table
    assert other["id"] not in table
    assert eio("search", "--count", "--tag", "*dataset*").stdout.strip() == "1"


def test_reindex_fsck_init(work, lake_env, tmp_path):
    a = json.loads(eio("save", "train.txt", "--json", cwd=work).stdout)
    cat = Path(lake_env["ELLIPTIO_CATALOGUE"].removeprefix("sqlite:///"))
    for p in cat.parent.glob(cat.name + "*"):
        p.unlink()
    assert eio("search", "--json").stdout.strip() == "[]"
    fsck = eio("fsck", check=False)
    assert fsck.returncode == 1 and a["id"] in fsck.stdout
    assert "reindexed 1 of 1" in eio("reindex").stdout
    assert eio("fsck").stdout.strip().endswith("clean")
    assert "store: local store at" in eio("init").stdout


def test_empty_directories_survive_save_get_and_reindex(work, lake_env, tmp_path):
    src = make_tree(work / "tree")
    human = eio("save", "tree", cwd=work).stdout
    assert f"{len(FILES)} file(s)" in human and f"{len(EMPTY)} empty dir(s)" in human
    aid = human.split()[1].rstrip(":")
    show = eio("show", aid).stdout
    assert "empty directories (3):" in show and "  tree/a/b/\n" in show
    got = json.loads(eio("get", aid, "--dest", str(tmp_path / "dl"), "--json").stdout)
    assert len(got["files"]) == len(FILES) and len(got["dirs"]) == len(EMPTY)
    assert tree_of(tmp_path / "dl" / aid / "tree") == tree_of(src)
    # the catalogue rebuilt from the store keeps them
    cat = Path(lake_env["ELLIPTIO_CATALOGUE"].removeprefix("sqlite:///"))
    for p in cat.parent.glob(cat.name + "*"):
        p.unlink()
    assert "reindexed 1 of 1" in eio("reindex", "--full").stdout
    assert json.loads(eio("show", aid, "--json").stdout)["dirs"] == expected_dirs("tree")
    eio("download", aid, "-o", str(tmp_path / "dl2"))
    assert tree_of(tmp_path / "dl2" / aid / "tree") == tree_of(src)
    # asked for one file, one file comes
    eio("get", aid, "tree/top.txt", "-o", str(tmp_path / "dl3"))
    assert tree_of(tmp_path / "dl3" / aid) == ({"tree"}, {"tree/top.txt"})


@pytest.mark.parametrize("args,code,needle", [
    (["save", "missing.txt"], 2, "no such file"),
    (["save", "train.txt", "-i", "novalue"], 2, "KEY=VALUE"),
    (["show", "not-an-id"], 2, "malformed artifact id"),
    (["show", "01m87ppfabc0jmwac15b0n6tbg"], 3, "no artifact"),
    (["search", "since=whenever"], 2, "cannot read"),
    (["search", "colour=red"], 2, "unknown query key"),
    (["get", "01m87ppfabc0jmwac15b0n6tbg"], 3, "no artifact"),
    (["save", "/dev/null"], 2, "device"),
])
def test_errors_are_one_line_with_a_documented_code(work, args, code, needle):
    res = eio(*args, cwd=work, check=False)
    assert res.returncode == code, res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_debug_keeps_the_traceback(work):
    res = eio("--debug", "show", "not-an-id", check=False)
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_unknown_file_in_get_is_clear(work):
    a = json.loads(eio("save", "train.txt", "--json", cwd=work).stdout)
    res = eio("get", a["id"], "nope.txt", check=False)
    assert res.returncode == 3 and "has no file 'nope.txt'" in res.stderr


def test_help_and_version():
    assert "save" in eio("--help").stdout
    assert eio("--version").stdout.startswith("eio, version")


# strings a terminal acts on: OSC 52 (set the clipboard), a C1 CSI, a carriage return and a
# backspace that overwrite, a clear-screen, a bidi override and a zero-width space
OSC52 = "\x1b]52;c;ZXZpbA==\x07"
ACTING = ("\x1b", "\x07", "\x9b", "\r", "\x08", "\u202e", "\u200b")


def acting(text: str) -> list[str]:
    return [c for c in ACTING if c in text]


def test_strings_from_the_lake_reach_the_terminal_escaped(work, tmp_path):
    name = "re\u202eport\u200b.txt"
    (work / name).write_text("x")
    type_ = "model" + OSC52
    tag = "ok\x9b31m\u202etxt"
    note = "a\rb\x08\x1b[2Jc"
    a = json.loads(eio("save", name, "-t", type_, "--tag", tag, "-i", f"note={note}",
                       "--json", cwd=work).stdout)
    aid = a["id"]
    # JSON keeps the exact values, written with escapes only
    for out in (eio("show", aid, "--json").stdout, eio("search", "--json").stdout):
        assert acting(out) == []
        md = json.loads(out)
        md = md[0] if isinstance(md, list) else md
        assert md["info"]["type"] == type_ and md["info"]["note"] == note
        assert md["tags"] == [tag] and [f["path"] if isinstance(f, dict) else f
                                        for f in md["files"]] == [name]
    # --yaml too: still YAML, the same values
    shown_yaml = eio("show", aid, "--yaml").stdout
    assert acting(shown_yaml) == []
    assert yaml.safe_load(shown_yaml)["info"] == {"type": type_, "note": note}
    # every human-readable form shows each character as its escape
    show = eio("show", aid).stdout
    assert acting(show) == []
    assert "type      model\\x1b]52;c;ZXZpbA==\\x07" in show
    assert "tags      ok\\x9b31m\\u202etxt" in show
    assert "re\\u202eport\\u200b.txt" in show
    command = next(line for line in show.splitlines() if line.startswith("command: "))
    assert "model\\x1b]52;c;ZXZpbA==\\x07" in command
    table = eio("search").stdout
    assert acting(table) == [] and "note=a\\rb\\x08\\x1b[2Jc" in table
    assert "re\\u202eport\\u200b.txt" in table
    tree = eio("lineage", aid).stdout
    assert acting(tree) == [] and aid in tree


def test_an_error_quoting_a_hostile_string_is_one_escaped_line(work):
    res = eio("save", "train.txt", "--info-file", "nowhere\x1b[2J\n\u202e.yaml", cwd=work,
              check=False)
    assert res.returncode == 2
    assert acting(res.stderr) == []
    assert "nowhere\\x1b[2J\\n\\u202e.yaml" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_log_goes_out_as_stored_when_piped_and_escaped_on_a_terminal(work):
    """``eio log``: piped, a log is the file it was (a diff to apply: every byte as
    captured); on a terminal its controls are shown as escapes, its line breaks and tabs
    kept, so a hostile diff cannot drive the terminal."""
    git = ["git", "-C", str(work), "-c", "user.name=a", "-c", "user.email=a@example.org"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=60)
    subprocess.run([*git, "add", "train.txt"], check=True, timeout=60)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True, timeout=60)
    (work / "train.txt").write_text("a,b\n1,2\nevil" + OSC52 + "\tok\n")
    aid = json.loads(eio("save", "train.txt", "--json", cwd=work).stdout)["id"]

    piped = eio("log", aid, "git_diff").stdout
    assert "+evil" + OSC52 + "\tok\n" in piped  # as stored, to the byte

    code, err, shown = eio_on_a_terminal(dict(os.environ), "log", aid, "git_diff",
                                         tty="stdout", timeout=60)
    assert code == 0, err
    shown = shown.replace("\r\n", "\n")  # the terminal's onlcr
    assert acting(shown) == [] and "\x1b" not in shown
    assert "+evil\\x1b]52;c;ZXZpbA==\\x07\tok\n" in shown
    assert shown.count("\n") == piped.count("\n")
