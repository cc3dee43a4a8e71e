"""Provenance capture: complete, bounded, never failing, and never leaking secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import elliptio as eio
from elliptio import environment, provenance


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


def fake_dist(site: Path, name: str, version: str, direct: dict | None) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct is not None:
        import json
        (info / "direct_url.json").write_text(json.dumps(direct))


def test_pip_freeze_keeps_what_reinstalling_needs(tmp_path, lake_env, monkeypatch):
    """Distributions installed from a VCS, a local directory or an archive (their
    direct_url.json, PEP 610) are captured as the direct references pip installs."""
    site = tmp_path / "site"
    commit = "0123456789abcdef0123456789abcdef01234567"
    fake_dist(site, "from-git", "1.2.0", {
        "url": "https://andy:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/t/g.git",
        "vcs_info": {"vcs": "git", "commit_id": commit, "requested_revision": "main"}})
    fake_dist(site, "git-sub", "0.1", {"url": "https://gitlab.example.com/t/mono.git",
                                       "subdirectory": "pkgs/sub",
                                       "vcs_info": {"vcs": "git", "commit_id": commit}})
    fake_dist(site, "git-edit", "0.2", {"url": "https://github.com/t/e.git",
                                        "vcs_info": {"vcs": "git", "commit_id": commit},
                                        "dir_info": {"editable": True}})
    fake_dist(site, "local-dir", "0.3", {"url": "file:///home/andy/src/local-dir",
                                         "dir_info": {}})
    fake_dist(site, "local-edit", "0.4", {"url": "file:///home/andy/src/local-edit",
                                          "dir_info": {"editable": True}})
    fake_dist(site, "a-wheel", "0.5", {"url": "file:///tmp/w/a_wheel-0.5-py3-none-any.whl",
                                       "archive_info": {"hashes": {"sha256": "ab" * 32}}})
    fake_dist(site, "broken-direct", "0.6", None)
    (site / "broken_direct-0.6.dist-info" / "direct_url.json").write_text("{not json")
    fake_dist(site, "from-index", "2.0.1", None)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(environment, "_pip_cache", None)
    monkeypatch.chdir(tmp_path)
    Path("x.txt").write_text("x")
    a = eio.save(["x.txt"])
    lines = set(a.logs.pip_freeze.read_text().splitlines())
    assert f"from-git @ git+https://***@github.com/t/g.git@{commit}  # from-git==1.2.0" in lines
    assert (f"git-sub @ git+https://gitlab.example.com/t/mono.git@{commit}"
            "#subdirectory=pkgs/sub  # git-sub==0.1") in lines
    assert (f"-e git+https://github.com/t/e.git@{commit}#egg=git_edit"
            "  # editable git-edit==0.2") in lines
    assert "local-dir @ file:///home/andy/src/local-dir  # local-dir==0.3" in lines
    assert "-e file:///home/andy/src/local-edit  # editable local-edit==0.4" in lines
    assert ("a-wheel @ file:///tmp/w/a_wheel-0.5-py3-none-any.whl  # a-wheel==0.5"
            in lines)
    assert "broken-direct==0.6  # direct_url.json unreadable" in lines
    assert "from-index==2.0.1" in lines
    assert "ghp_abcdefghijklmnopqrstuvwxyz" not in a.logs.pip_freeze.read_text()
    assert a.provenance["pip_freeze"]["packages"] == len(lines)


def test_staged_and_unstaged_changes_are_in_the_diff(repo):
    (repo / "staged.py").write_text("print('staged, new file')\n")
    git(repo, "add", "staged.py")
    (repo / "train.py").write_text("print('v2 staged')\n")
    git(repo, "add", "train.py")
    (repo / "train.py").write_text("print('v2 staged')\nprint('v3 unstaged on top')\n")
    a = eio.save(["data.txt"])
    diff = a.logs.git_diff.read_text()
    assert "+print('staged, new file')" in diff
    assert "+print('v2 staged')" in diff and "+print('v3 unstaged on top')" in diff
    assert "-print('v1')" in diff
    assert "staged.py" not in a.logs.git_untracked.read_text().split()
    assert "new_untracked.py" in a.logs.git_untracked.read_text().split()


def test_conda_environment_is_named(tmp_path, lake_env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("x.txt").write_text("x")
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.delenv("CONDA_DEFAULT_ENV", raising=False)
    assert eio.save(["x.txt"]).provenance["conda"] == {"present": False}
    monkeypatch.setenv("CONDA_PREFIX", "/opt/conda/envs/torch-2")
    monkeypatch.setenv("CONDA_DEFAULT_ENV", "torch-2")
    Path("y.txt").write_text("y")
    assert eio.save(["y.txt"]).provenance["conda"] == {
        "present": True, "name": "torch-2", "prefix": "/opt/conda/envs/torch-2"}
    monkeypatch.delenv("CONDA_DEFAULT_ENV")
    monkeypatch.setenv("CONDA_PREFIX", "/home/b/miniforge3/envs/eval")
    Path("z.txt").write_text("z")
    assert eio.save(["z.txt"]).provenance["conda"]["name"] == "eval"
