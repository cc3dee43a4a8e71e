"""Environment and artifact comparison (elliptio.envdiff, elliptio.artifactdiff): artifacts
saved with an environment the test chose (pip freeze, Python, platform), compared with a
running environment the test chose too, and with each other."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import pytest

from elliptio import provenance
from elliptio.envdiff import (
    EnvDiff,
    Environment,
    canonical_name,
    compare,
    parse_freeze,
    recorded_environment,
    running_environment,
)
from elliptio.inputs import resolve_inputs

FREEZE_A = """\
# a comment line
Pandas==2.0.1
numpy==1.26.0  # editable
scipy==1.11.0
zope.interface==6.0
requests[socks]==2.31.0 ; python_version >= "3.8"
"""
FREEZE_B = """\
pandas==1.4.0
numpy==1.26.0
Zope_Interface==6.0
requests==2.31.0
mypkg @ git+https://example.org/mypkg.git@abc123#egg=mypkg
"""


def save(lake, tmp_path: Path, monkeypatch, freeze: str | None, files: dict[str, bytes],
         python: str | None = None, plat: dict | None = None, **kw):
    """An artifact saved while pip freeze returned *freeze* (None: saved as a writer's,
    without pip freeze or Python), with *files* ({name: bytes})."""
    monkeypatch.setattr(provenance, "pip_freeze", lambda: freeze)
    src = tmp_path / f"src{len(list(tmp_path.glob('src*')))}"
    src.mkdir()
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    extra = {}
    if python:
        extra["python"] = {"version": python, "implementation": "CPython"}
    if plat:
        extra["platform"] = plat
    writer = {"argv": ["cp"], "uid": 1000, "login": "andy", "via": "test"} \
        if freeze is None else None
    entries = resolve_inputs({n: str(src / n) for n in files})
    return lake.save_entries(entries, info=kw.pop("info", {}), extra_provenance=extra,
                             writer=writer, **kw)


def test_canonical_name_is_packagings():
    assert canonical_name("Zope_Interface") == "zope-interface"
    assert canonical_name("zope.interface") == "zope-interface"
    assert canonical_name("A-_.-b__C") == "a-b-c"
    assert canonical_name("pandas") == "pandas"


def test_parse_freeze_understands_every_form():
    text = """\
# Editable install with no version control (LocalPkg==0.1)
-e /home/andy/src/localpkg
-e git+https://example.org/x.git@deadbeef#egg=Vcs_Pkg&subdirectory=sub
--editable=/opt/other
-i https://pypi.example.org/simple
--find-links /wheels
-r other.txt
Foo.Bar==1.0
baz===2.0
qux @ https://example.org/qux-1.0.tar.gz#sha256=abc
spam>=3 ; python_version < "3.12"

ham[extra1,extra2]==4.0  # comment after whitespace
eggs==5.0 # inline
"""
    assert parse_freeze(text) == {
        "localpkg": "-e /home/andy/src/localpkg",
        "vcs-pkg": "-e git+https://example.org/x.git@deadbeef#egg=Vcs_Pkg&subdirectory=sub",
        "/opt/other": "-e /opt/other",
        "foo-bar": "1.0",
        "baz": "2.0",
        "qux": "@ https://example.org/qux-1.0.tar.gz#sha256=abc",
        "spam": '>=3 ; python_version < "3.12"',
        "ham": "4.0",
        "eggs": "5.0",
    }
    assert parse_freeze("") == {}
    assert parse_freeze("a==1\nA==2\n") == {"a": "2"}  # a name twice: the last line


def test_running_environment_is_what_a_save_captures():
    env = running_environment()
    assert env.packages == parse_freeze(provenance.pip_freeze())
    assert env.packages["pyyaml"]  # a dependency of the project, by its canonical name
    assert env.python == platform.python_version()
    assert env.platform == f"{platform.system()} {platform.machine()}"
    assert env.unknown == {}


def test_env_diff_names_added_removed_changed_python_and_platform(lake, tmp_path,
                                                                  monkeypatch):
    a = save(lake, tmp_path, monkeypatch, FREEZE_A, {"x.txt": b"x"}, python="3.0.1",
             plat={"system": "Plan9", "release": "4", "machine": "mips"})
    assert a.logs.pip_freeze.read_text() == FREEZE_A
    monkeypatch.setattr(provenance, "pip_freeze", lambda: FREEZE_B)
    d = a.env_diff()
    assert isinstance(d, EnvDiff) and d.labels == ("artifact", "here")
    assert d.added == [("mypkg", "@ git+https://example.org/mypkg.git@abc123#egg=mypkg")]
    assert d.removed == [("scipy", "1.11.0")]
    assert d.changed == [("pandas", "2.0.1", "1.4.0")]
    assert d.python == ("3.0.1", platform.python_version())
    here = f"{platform.system()} {platform.machine()}"
    assert d.platform == ("Plan9 mips", here)
    assert d.unknown == {} and d.differs and not d.same
    assert d.lines() == [
        "pandas 2.0.1 (artifact) vs 1.4.0 (here)",
        "mypkg @ git+https://example.org/mypkg.git@abc123#egg=mypkg (here only)",
        "scipy 1.11.0 (artifact only)",
        f"python 3.0.1 (artifact) vs {platform.python_version()} (here)",
        f"platform Plan9 mips (artifact) vs {here} (here)",
    ]
    assert json.loads(json.dumps(d.as_dict())) == {
        "same": False, "differs": True, "labels": ["artifact", "here"],
        "packages": {
            "added": [{"name": "mypkg",
                       "version": "@ git+https://example.org/mypkg.git@abc123#egg=mypkg"}],
            "removed": [{"name": "scipy", "version": "1.11.0"}],
            "changed": [{"name": "pandas", "artifact": "2.0.1", "here": "1.4.0"}]},
        "python": {"artifact": "3.0.1", "here": platform.python_version()},
        "platform": {"artifact": "Plan9 mips", "here": here},
        "unknown": {},
    }


def test_the_same_environment_is_the_same(lake, tmp_path, monkeypatch):
    a = save(lake, tmp_path, monkeypatch, FREEZE_A, {"x.txt": b"x"})
    monkeypatch.setattr(provenance, "pip_freeze", lambda: FREEZE_A)
    d = a.env_diff()
    assert d.same and not d.differs and d.lines() == []
    assert d.as_dict() == {"same": True, "differs": False, "labels": ["artifact", "here"],
                           "packages": {"added": [], "removed": [], "changed": []},
                           "python": None, "platform": None, "unknown": {}}
    # a real save (nothing chosen), compared with the interpreter that saved it
    monkeypatch.undo()
    (tmp_path / "real.txt").write_text("r")
    real = lake.save([str(tmp_path / "real.txt")])
    assert real.logs.pip_freeze.read_text() == provenance.pip_freeze()
    assert real.env_diff().same


def test_an_artifact_without_pip_freeze_has_unknown_packages(lake, tmp_path, monkeypatch):
    a = save(lake, tmp_path, monkeypatch, None, {"x.txt": b"x"})
    assert "pip_freeze" not in a.logs
    env = recorded_environment(a)
    assert env.packages is None and env.python is None
    assert env.unknown == {"packages": f"no pip freeze was recorded ({provenance.WRITER_UNKNOWN})",
                           "python": "no Python version was recorded"}
    monkeypatch.setattr(provenance, "pip_freeze", lambda: FREEZE_B)
    d = a.env_diff()
    assert d.added == d.removed == d.changed == [] and d.python is None
    assert d.platform is None  # recorded on this host: compared, and the same
    assert not d.differs and not d.same
    assert set(d.unknown) == {"packages", "python"}
    assert d.unknown["packages"].startswith("artifact: no pip freeze was recorded")
    assert d.as_dict()["packages"] is None


def test_compare_of_two_chosen_environments_labels_both_sides():
    left = Environment({"a": "1", "b": "2"}, "3.11.2", "Linux x86_64")
    right = Environment(None, "3.11.2", "Linux aarch64", {"packages": "lost"})
    d = compare(left, right, ("a", "b"))
    assert d.unknown == {"packages": "b: lost"} and d.added == d.removed == []
    assert d.platform == ("Linux x86_64", "Linux aarch64") and d.python is None
    assert d.as_dict()["platform"] == {"a": "Linux x86_64", "b": "Linux aarch64"}


def test_artifact_diff_lists_every_kind_of_difference(lake, tmp_path, monkeypatch):
    parent = save(lake, tmp_path, monkeypatch, FREEZE_A, {"p.txt": b"p"})
    a = save(lake, tmp_path, monkeypatch, FREEZE_A,
             {"same.txt": b"same", "changed.csv": b"1,2\n", "gone.txt": b"gone"},
             info={"type": "dataset", "epochs": 10, "model": {"layers": 3, "act": "relu"},
                   "old": [1, 2], "flag": 1}, tags=["keep", "old"], based_on=[parent.id])
    b = save(lake, tmp_path, monkeypatch, FREEZE_B,
             {"same.txt": b"same", "changed.csv": b"1,2\n3,4\n", "new/one.bin": b"n" * 7},
             info={"type": "dataset", "epochs": "10", "model": {"layers": 4, "act": "relu"},
                   "lr": 0.1, "flag": True}, tags=["keep", "new"], based_on=[])
    d = a.diff(b)
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    assert (d.a, d.b) == (a.id, b.id)
    assert [(f.path, f.size, f.sha256) for f in d.files_added] == \
        [("new/one.bin", 7, sha(b"n" * 7))]
    assert [(f.path, f.size, f.sha256) for f in d.files_removed] == \
        [("gone.txt", 4, sha(b"gone"))]
    assert [(c.path, c.a.size, c.a.sha256, c.b.size, c.b.sha256) for c in d.files_changed] == \
        [("changed.csv", 4, sha(b"1,2\n"), 8, sha(b"1,2\n3,4\n"))]
    assert d.info_added == [("lr", 0.1)]
    assert d.info_removed == [("old", [1, 2])]
    assert [(c.key, c.a, c.b) for c in d.info_changed] == \
        [("epochs", 10, "10"), ("flag", 1, True), ("model.layers", 3, 4)]  # 1 == True
    assert (d.tags_added, d.tags_removed) == (["new"], ["old"])
    assert (d.based_on_added, d.based_on_removed) == ([], [parent.id])
    e = d.environment
    assert e.labels == ("a", "b") and e.changed == [("pandas", "2.0.1", "1.4.0")]
    assert e.removed == [("scipy", "1.11.0")] and [n for n, _ in e.added] == ["mypkg"]
    assert e.python is None and e.platform is None and e.unknown == {}
    assert d.differs and not d.same
    j = json.loads(json.dumps(d.as_dict()))
    assert set(j) == {"a", "b", "same", "differs", "files", "info", "tags", "based_on",
                      "environment"}
    assert j["files"]["changed"] == [{"path": "changed.csv",
                                      "a": {"size": 4, "sha256": sha(b"1,2\n")},
                                      "b": {"size": 8, "sha256": sha(b"1,2\n3,4\n")}}]
    assert j["files"]["added"] == [{"path": "new/one.bin", "size": 7, "sha256": sha(b"n" * 7)}]
    assert j["info"] == {"added": [{"key": "lr", "value": 0.1}],
                         "removed": [{"key": "old", "value": [1, 2]}],
                         "changed": [{"key": "epochs", "a": 10, "b": "10"},
                                     {"key": "flag", "a": 1, "b": True},
                                     {"key": "model.layers", "a": 3, "b": 4}]}
    assert j["tags"] == {"added": ["new"], "removed": ["old"]}
    assert j["based_on"] == {"added": [], "removed": [parent.id]}
    assert j["environment"]["packages"]["changed"] == [{"name": "pandas", "a": "2.0.1",
                                                        "b": "1.4.0"}]
    # the other way round, everything swaps sides
    r = b.diff(a)
    assert [f.path for f in r.files_added] == ["gone.txt"]
    assert r.tags_added == ["old"] and r.based_on_added == [parent.id]
    assert r.environment.changed == [("pandas", "1.4.0", "2.0.1")]


def test_an_artifact_compared_with_an_equal_one_is_the_same(lake, tmp_path, monkeypatch):
    a = save(lake, tmp_path, monkeypatch, FREEZE_A, {"x.txt": b"x"}, info={"k": 1}, tags=["t"])
    b = save(lake, tmp_path, monkeypatch, FREEZE_A, {"x.txt": b"x"}, info={"k": 1}, tags=["t"],
             based_on=[])
    d = a.diff(b)
    assert d.same and not d.differs
    j = d.as_dict()
    assert j["same"] is True and j["files"] == {"added": [], "removed": [], "changed": []}


def test_artifact_diff_without_pip_freeze_still_diffs_the_rest(lake, tmp_path, monkeypatch):
    a = save(lake, tmp_path, monkeypatch, FREEZE_A, {"x.txt": b"x"})
    b = save(lake, tmp_path, monkeypatch, None, {"x.txt": b"y"})
    d = a.diff(b)
    assert [c.path for c in d.files_changed] == ["x.txt"]
    assert d.environment.unknown["packages"].startswith("b: no pip freeze was recorded")
    assert d.environment.unknown["python"] == "b: no Python version was recorded"
    assert d.differs and not d.same and d.as_dict()["environment"]["packages"] is None


@pytest.mark.parametrize("planted", ["evil\x1b]0\x07pkg", "bidi\u202epkg"])
def test_planted_names_stay_raw_in_the_model(lake, tmp_path, monkeypatch, planted):
    """The model keeps what was recorded (the CLI shows it escaped: test_t4_cli_diff)."""
    a = save(lake, tmp_path, monkeypatch, f"{planted}==1.0\n", {"x.txt": b"x"})
    monkeypatch.setattr(provenance, "pip_freeze", lambda: "")
    assert a.env_diff().removed == [(canonical_name(planted), "1.0")]


def test_a_pip_freeze_log_whose_bytes_changed_is_refused(lake, tmp_path, monkeypatch):
    from elliptio import IntegrityError

    a = save(lake, tmp_path, monkeypatch, FREEZE_A, {"x.txt": b"x"})
    path = tmp_path / "store" / a.metadata["logs"]["pip_freeze"]["object"]
    assert path.read_text() == FREEZE_A
    path.chmod(0o644)
    path.write_text(FREEZE_A.replace("2.0.1", "2.0.2"))
    with pytest.raises(IntegrityError, match="sha256"):
        a.env_diff()
    with pytest.raises(IntegrityError, match="sha256"):
        a.diff(a)
