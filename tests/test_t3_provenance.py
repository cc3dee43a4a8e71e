"""Provenance capture: complete, bounded, never failing, and never leaking secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import elliptio as eio
from elliptio import provenance


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x",
                        "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


@pytest.fixture
def repo(tmp_path: Path, lake_env, monkeypatch) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "train.py").write_text("print('v1')\n")
    git(r, "add", "train.py")
    git(r, "commit", "-qm", "first")
    git(r, "remote", "add", "origin", "https://andy:s3cr3tpass@git.example.com/team/proj.git")
    (r / "train.py").write_text("print('v2')\napi_key = 'sk-abcdefghijklmnopqrstuvwx'\n")
    (r / "new_untracked.py").write_text("x")
    (r / "data.txt").write_text("data")
    monkeypatch.chdir(r)
    return r


def test_git_state_is_captured_with_diff_and_untracked(repo):
    a = eio.save(["data.txt"])
    g = a.provenance["git"]
    assert g["present"] and g["root"] == str(repo) and g["branch"] == "main"
    assert len(g["commit"]) == 40 and g["dirty"] is True
    assert g["remote_url"] == "https://***@git.example.com/team/proj.git"
    diff = a.logs.git_diff.read_text()
    assert "+print('v2')" in diff
    assert "sk-abcdefghijklmnopqrstuvwx" not in diff
    untracked = a.logs.git_untracked.read_text().split()
    assert "new_untracked.py" in untracked and "data.txt" in untracked


def test_everything_else_is_captured(repo):
    a = eio.save(["data.txt"])
    p = a.provenance
    for key in ("python", "platform", "host", "user", "argv", "cwd", "elliptio_version", "env",
                "pip_freeze"):
        assert key in p, key
    assert p["cwd"] == str(repo) and p["user"] == "andy"
    assert p["elliptio_version"] == eio.__version__
    assert p["pip_freeze"]["packages"] > 5


def test_git_diff_is_bounded_with_a_marker(repo, monkeypatch):
    monkeypatch.setattr(provenance, "GIT_LOG_LIMIT", 1000)
    (repo / "train.py").write_text("x = 1\n" * 5000)
    a = eio.save(["data.txt"])
    diff = a.logs.git_diff.read_text()
    assert a.provenance["git"]["diff_cut"] is True
    assert "[elliptio: cut at 1000 bytes" in diff and len(diff) < 1200


def test_missing_git_is_recorded_not_fatal(tmp_path, lake_env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    Path("x.txt").write_text("x")
    a = eio.save(["x.txt"])
    assert a.provenance["git"] == {"present": False, "reason": "git is not installed"}


def test_outside_a_repository(tmp_path, lake_env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("x.txt").write_text("x")
    a = eio.save(["x.txt"])
    assert a.provenance["git"]["present"] is False
    assert "git_diff" not in a.logs


def test_pip_freeze_failure_is_recorded_not_fatal(tmp_path, lake_env, monkeypatch):
    def boom() -> str:
        raise RuntimeError("metadata unreadable")

    monkeypatch.setattr(provenance, "pip_freeze", boom)
    monkeypatch.chdir(tmp_path)
    Path("x.txt").write_text("x")
    a = eio.save(["x.txt"])
    assert a.provenance["pip_freeze"] == {"present": False, "reason": "metadata unreadable"}


def test_environment_by_allow_list_with_redaction(tmp_path, lake_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_abcdefghijklmnopqrstuvwxyz0123456789")
    monkeypatch.setenv("MY_APP_PASSWORD", "hunter2hunter2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("ELLIPTIO_CATALOGUE_X", "x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://user:topsecret@s3.example.com")
    monkeypatch.chdir(tmp_path)
    Path("x.txt").write_text("x")
    a = eio.save(["x.txt"])
    env = a.provenance["env"]
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env["AWS_ENDPOINT_URL"] == "https://***@s3.example.com"
    for k in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "GITHUB_TOKEN", "MY_APP_PASSWORD"):
        assert k not in env
    root = Path(lake_env["ELLIPTIO_STORE"].removeprefix("file://"))
    everything = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    for secret in (b"wJalrXUtnFEMI", b"AKIAIOSFODNN7EXAMPLE", b"ghp_abcdef", b"hunter2",
                   b"topsecret"):
        assert secret not in everything


def test_argv_redaction():
    argv = ["train.py", "--token", "abc123", "--password=hunter2", "--lr", "0.1",
            "--db", "postgres://u:pw@h/db", "AKIAIOSFODNN7EXAMPLE"]
    out = provenance.redact_argv(argv)
    assert out == ["train.py", "--token", "***", "--password=***", "--lr", "0.1",
                   "--db", "postgres://***@h/db", "AKIA***"]


@pytest.mark.parametrize("text,secret", [
    ("aws_secret_access_key = abcdEFGH1234/xyz", "abcdEFGH1234"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "eyJhbGci"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow"),
    ('"api_key": "0123456789abcdef"', "0123456789abcdef"),
    ("xoxb-1234567890-abcdefghij", "xoxb-1234567890"),
])
def test_redact_text(text, secret):
    assert secret not in provenance.redact(text)
