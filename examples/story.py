"""The user stories of the README, run on whatever lake the environment configures.

Andy saves a dataset list, Brenda finds it, loads it and saves a model based on it,
Charlie evaluates the model; then lineage is followed from Andy's artifact.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import elliptio as eio
from elliptio import lineage

work = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
work.mkdir(parents=True, exist_ok=True)
os.chdir(work)


def as_user(name: str) -> None:
    os.environ["ELLIPTIO_USER"] = name
    lineage.reset()  # a new "process" for each person


# 1. Save
as_user("andy")
Path("train.txt").write_text("x,y\n1,2\n3,4\n")
Path("test.txt").write_text("x,y\n5,6\n")
andy = eio.save(["train.txt", "test.txt"], tags=["dataset"],
                info={"type": "dataset_list", "stratification": "new-cool-method"})
print(f"andy saved      {andy.id}  files={list(andy.files)}")

# 2. Search by metadata
as_user("brenda")
found = eio.search(user="andy", since="10d", files="*.txt", tags="*dataset*")
print(f"brenda found    {[a.id for a in found]}  stratification="
      f"{found[0].info['stratification']}")

# 3. Use
a = eio.load(found[0].id)
rows = a.files["train.txt"].read_text().splitlines()
print(f"brenda read     train.txt: {len(rows) - 1} rows from {a.files['train.txt'].url}")
a.logs.pip_freeze.download()
print(f"brenda fetched  pip_freeze.txt ({Path('pip_freeze.txt').stat().st_size} bytes)")
Path("model.pth").write_bytes(b"weights " * 1000)
model = eio.create_artifact().save_files(["model.pth"], type="model")
print(f"brenda saved    {model.id}  based_on={model.based_on}")

as_user("charlie")
eio.load(model.id)
Path("report.md").write_text("# accuracy: 0.93\n")
report = eio.save(["report.md"], type="evaluation_report")
print(f"charlie saved   {report.id}  based_on={report.based_on}")

# 4. Search by lineage
as_user("andy")
direct = eio.search(based_on=andy.id)
everything = eio.search(based_on=andy.id, transitive=True)
print(f"based on andy's: direct={[x.id for x in direct]}")
print(f"                 transitive={[x.id for x in everything]}")
assert report.id in {x.id for x in everything}
print(f"ANDY_ID={andy.id}")
