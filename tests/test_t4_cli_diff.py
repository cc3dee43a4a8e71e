"""``eio env diff`` and ``eio diff`` as a user runs them (a subprocess, so "here" is a real
interpreter), and in-process with click's runner where a terminal's colours are wanted.
The artifacts are saved with environments the test chose (tests/test_t3_envdiff.save)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys

from click.testing import CliRunner

from elliptio import provenance
from elliptio.cli import cli
from tests.test_t3_envdiff import FREEZE_A, FREEZE_B, save

SGR = re.compile(r"\x1b\[[0-9;]*m")  # what click.style writes, and nothing else


def eio(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elliptio", *args], text=True,
                          capture_output=True, env=os.environ.copy(), timeout=60)


def squeeze(text: str) -> list[str]:
    """The lines of a table with runs of spaces as one."""
    return [" ".join(line.split()) for line in text.splitlines()]


def doctored_freeze() -> tuple[str, str]:
    """This interpreter's freeze with PyYAML at another version, click left out and a
    package it does not have; and click's version."""
    lines = [ln for ln in provenance.pip_freeze().splitlines()
             if not ln.lower().startswith(("click==", "pyyaml=="))]
    return "\n".join([*lines, "PyYAML==0.0.1", "ghost_pkg==9.9"]) + "\n", \
        importlib.metadata.version("click")


def test_env_diff_prints_the_differences_and_exits_1(lake, tmp_path, monkeypatch):
    freeze, click_version = doctored_freeze()
    a = save(lake, tmp_path, monkeypatch, freeze, {"x.txt": b"x"}, python="3.0.1")
    res = eio("env", "diff", a.id[:10])  # a unique prefix
    here_yaml = importlib.metadata.version("PyYAML")
    assert (res.returncode, res.stderr) == (1, "")
    assert res.stdout.splitlines() == [
        f"pyyaml 0.0.1 (artifact) vs {here_yaml} (here)",
        f"click {click_version} (here only)",
        "ghost-pkg 9.9 (artifact only)",
        f"python 3.0.1 (artifact) vs {platform.python_version()} (here)",
    ]
    assert "\x1b" not in res.stdout  # piped: no colour
    res = eio("env", "diff", a.id, "--json")
    assert res.returncode == 1
    j = json.loads(res.stdout)
    assert j["artifact"] == a.id and j["same"] is False and j["differs"] is True
    assert j["packages"] == {
        "added": [{"name": "click", "version": click_version}],
        "removed": [{"name": "ghost-pkg", "version": "9.9"}],
        "changed": [{"name": "pyyaml", "artifact": "0.0.1", "here": here_yaml}]}
    assert j["python"] == {"artifact": "3.0.1", "here": platform.python_version()}
    assert j["platform"] is None and j["unknown"] == {}


def test_env_diff_of_a_real_save_prints_nothing_and_exits_0(lake, tmp_path):
    (tmp_path / "r.txt").write_text("r")
    a = lake.save([str(tmp_path / "r.txt")])
    res = eio("env", "diff", a.id)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    res = eio("env", "diff", a.id, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["same"] is True


def test_unknown_and_malformed_ids_are_one_line(lake_env):
    for args in (["env", "diff", "0123456789abcdefghjkmnpqrs"], ["diff", "zzzzzzzz", "zzzzzzz"]):
        res = eio(*args)
        assert res.returncode == 3 and res.stdout == ""
        assert res.stderr.startswith("eio: error: no artifact") and res.stderr.count("\n") == 1
    res = eio("env", "diff", "not-an-id!")
    assert res.returncode == 2 and res.stderr.count("\n") == 1


def test_env_diff_without_pip_freeze_says_so_and_exits_2(lake, tmp_path, monkeypatch):
    a = save(lake, tmp_path, monkeypatch, None, {"x.txt": b"x"})
    res = eio("env", "diff", a.id)
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr.splitlines() == [
        f"eio: packages not compared: artifact: no pip freeze was recorded "
        f"({provenance.WRITER_UNKNOWN})",
        "eio: python not compared: artifact: no Python version was recorded"]
    j = json.loads(eio("env", "diff", a.id, "--json").stdout)
    assert j["packages"] is None and set(j["unknown"]) == {"packages", "python"}


def two(lake, tmp_path, monkeypatch):
    parent = save(lake, tmp_path, monkeypatch, FREEZE_A, {"p.txt": b"p"})
    a = save(lake, tmp_path, monkeypatch, FREEZE_A,
             {"changed.csv": b"1,2\n", "gone.txt": b"gone", "same.txt": b"s"},
             info={"epochs": 10, "model": {"layers": 3}}, tags=["old"], based_on=[parent.id])
    b = save(lake, tmp_path, monkeypatch, FREEZE_B,
             {"changed.csv": b"1,2\n3,4\n", "new.bin": b"n" * 7, "same.txt": b"s"},
             info={"epochs": 20, "model": {"layers": 3}, "lr": 0.1}, tags=["new"], based_on=[])
    return parent, a, b


def sha12(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def test_diff_prints_a_plain_table_when_piped(lake, tmp_path, monkeypatch):
    parent, a, b = two(lake, tmp_path, monkeypatch)
    res = eio("diff", a.id, b.id[:14])
    assert res.returncode == 1 and res.stderr == "" and "\x1b" not in res.stdout
    lines = squeeze(res.stdout)
    old_csv, new_csv = b"1,2\n", b"1,2\n3,4\n"
    assert lines[0] == f"a {a.id} andy {a.metadata['created']}"
    assert lines[1] == f"b {b.id} andy {b.metadata['created']}"
    assert lines[3] == "change name a b"
    assert lines[5:] == [
        f"+ file new.bin 7 B {sha12(b'n' * 7)}",
        f"- file gone.txt 4 B {sha12(b'gone')}",
        f"~ file changed.csv 4 B {sha12(old_csv)} 8 B {sha12(new_csv)}",
        "+ info lr 0.1",
        "~ info epochs 10 20",
        "+ tag new",
        "- tag old",
        f"- based_on {parent.id}",
        "+ package mypkg @ git+https://example.org/mypkg.git@abc123#egg=mypkg",
        "- package scipy 1.11.0",
        "~ package pandas 2.0.1 1.4.0",
    ]
    res = eio("diff", a.id, b.id, "--json")
    assert res.returncode == 1 and json.loads(res.stdout) == a.diff(b).as_dict()
    same = eio("diff", a.id, a.id)
    assert (same.returncode, same.stdout, same.stderr) == (0, "", "")
    assert json.loads(eio("diff", a.id, a.id, "--json").stdout)["same"] is True


def test_diff_is_coloured_on_a_terminal_and_when_asked(lake, tmp_path, monkeypatch):
    _, a, b = two(lake, tmp_path, monkeypatch)
    runner = CliRunner()
    out = runner.invoke(cli, ["diff", a.id, b.id], color=True)
    assert out.exit_code == 1, out.output
    lines = out.stdout.splitlines()
    row = {SGR.sub("", ln).split()[2]: ln for ln in lines[5:]}
    assert row["new.bin"].startswith("\x1b[32m+ file")  # green: in B only
    assert row["gone.txt"].startswith("\x1b[31m- file")  # red: in A only
    assert row["changed.csv"].startswith("\x1b[33m~ file")  # yellow: changed
    assert lines[3].startswith("\x1b[1mchange")  # the heading bold
    assert SGR.sub("", out.stdout) == runner.invoke(cli, ["diff", a.id, b.id]).stdout
    for args, color in ((["diff", a.id, b.id], False), (["diff", "--no-color", a.id, b.id], True)):
        plain = runner.invoke(cli, args, color=color)
        assert plain.exit_code == 1 and "\x1b" not in plain.stdout
    assert "\x1b[32m+ file" in eio("diff", "--color", a.id, b.id).stdout  # piped, but asked
    env = runner.invoke(cli, ["env", "diff", a.id], color=True)
    assert env.exit_code == 1  # FREEZE_A against this interpreter
    assert all(ln.startswith("\x1b[3") for ln in env.stdout.splitlines())


def test_env_diff_colours_by_kind(lake, tmp_path, monkeypatch):
    a = save(lake, tmp_path, monkeypatch, FREEZE_A, {"x.txt": b"x"})
    monkeypatch.setattr(provenance, "pip_freeze", lambda: FREEZE_B)
    out = CliRunner().invoke(cli, ["env", "diff", a.id], color=True)
    assert out.exit_code == 1
    assert out.stdout.splitlines() == [
        "\x1b[33mpandas 2.0.1 (artifact) vs 1.4.0 (here)\x1b[0m",
        "\x1b[32mmypkg @ git+https://example.org/mypkg.git@abc123#egg=mypkg (here only)\x1b[0m",
        "\x1b[31mscipy 1.11.0 (artifact only)\x1b[0m"]


def test_strings_from_the_lake_are_shown_escaped(lake, tmp_path, monkeypatch):
    evil = "evil\x1b]0\x07pkg"
    a = save(lake, tmp_path, monkeypatch, f"{evil}==1.0\n", {"x.txt": b"x"},
             info={"k\u202e": "v\x1b[2J"})
    b = save(lake, tmp_path, monkeypatch, "", {"x\u202e.txt": b"x"}, info={})
    for color in ("--no-color", "--color"):
        res = eio("diff", color, a.id, b.id)
        assert res.returncode == 1
        out = SGR.sub("", res.stdout)
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
        flat = " ".join(out.split())
        assert "- package evil\\x1b]0\\x07pkg 1.0" in flat and "+ file x\\u202e.txt" in flat
        assert '- info k\\u202e "v\\u001b[2J"' in flat
    env = eio("env", "diff", a.id)
    assert env.returncode == 1 and "\x1b" not in env.stdout
    assert "evil\\x1b]0\\x07pkg 1.0 (artifact only)" in env.stdout.splitlines()
    for args, key in ((["env", "diff", a.id, "--json"], None),
                      (["diff", a.id, b.id, "--json"], "environment")):
        res = eio(*args)
        assert "\x1b" not in res.stdout and "\u202e" not in res.stdout
        j = json.loads(res.stdout)  # the same value, escaped in the JSON text
        assert (j[key] if key else j)["packages"]["removed"] == [{"name": evil,
                                                                 "version": "1.0"}]
    assert json.loads(eio("diff", a.id, b.id, "--json").stdout)["info"]["removed"] == \
        [{"key": "k\u202e", "value": "v\x1b[2J"}]
