"""The IAM policy of docs/s3.md, enforced by moto's server: each identity writes only
under its own user segment and reads everything.

The writers' policy is read from docs/s3.md (the JSON block whose statements include
``WriteOwnUserPrefix``), so the page is what is tested. moto evaluates identity policies
with its own matcher: it substitutes no policy variables, and after turning ``*`` into
``.*`` it reads the resource pattern as a regular expression. So each user gets the policy
with ``${aws:username}`` replaced by its name and each ``?`` (one character, in IAM) by
``.`` (one character, in a regular expression): the same rule in moto's syntax. The bucket
policy of that page is not evaluated by moto (principals other than ``*``,
``NotResource`` and conditions are ignored) and is not tested here.

moto's authentication switch is process-wide (its server runs in a thread of this
process): it is turned on only after the set-up, through the server's
``/moto-api/reset-auth``, and the previous value is put back in teardown, with the state
reset and the server stopped, so no other test sees it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.request
from pathlib import Path

import boto3
import flask  # noqa: F401 - moto's server mode needs it: a missing one fails, never skips
import pytest
from botocore.exceptions import ClientError
from moto.moto_server import threaded_moto_server as moto_server

from elliptio import Lake, Settings, StorageError
from elliptio.ids import new_id
from tests.fixtures.ports import free_port

DOC = Path(__file__).resolve().parents[1] / "docs" / "s3.md"
BUCKET = "team-lake"
REGION = "us-east-1"
ROOT_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def documented_policy() -> dict:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)
    for block in blocks:
        policy = json.loads(block)
        if any(s.get("Sid") == "WriteOwnUserPrefix" for s in policy["Statement"]):
            return policy
    raise AssertionError("docs/s3.md has no writers' policy (Sid WriteOwnUserPrefix)")


def for_moto(policy: dict, user: str) -> str:
    """The policy as IAM would read it for *user*, in moto's matcher's syntax."""
    text = json.dumps(policy).replace("BUCKET", BUCKET).replace("${aws:username}", user)
    return text.replace("?", ".")



def post(url: str, data: bytes) -> dict:
    # not a form: moto reads the raw body, which Flask leaves empty for form posts
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"{}")


@pytest.fixture
def moto_iam(monkeypatch, tmp_path):
    """A moto server on 127.0.0.1 with an Object Lock bucket, users alice and mallory
    holding the documented policy, and IAM enforcement on; their credentials by name."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    previous = None
    try:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        iam = boto3.client("iam", region_name=REGION, endpoint_url=endpoint, **ROOT_KEYS)
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint, **ROOT_KEYS)
        s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        assert s3.get_object_lock_configuration(Bucket=BUCKET)[
            "ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
        keys = {}
        for user in ("alice", "mallory"):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="elliptio-writer",
                                PolicyDocument=for_moto(documented_policy(), user))
            k = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = {"aws_access_key_id": k["AccessKeyId"],
                          "aws_secret_access_key": k["SecretAccessKey"]}
        previous = post(f"{endpoint}/moto-api/reset-auth", b"0")[
            "PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
        yield endpoint, keys
    finally:
        try:
            if previous is not None:
                post(f"{endpoint}/moto-api/reset-auth", str(previous).encode())
            post(f"{endpoint}/moto-api/reset", b"")
        finally:
            server.stop()


def s3_as(endpoint: str, creds: dict):
    return boto3.client("s3", region_name=REGION, endpoint_url=endpoint, **creds)


def lake_as(monkeypatch, tmp_path: Path, user: str, creds: dict, name: str) -> Lake:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["aws_secret_access_key"])
    lake = Lake(Settings.load(store=f"s3://{BUCKET}", user=user,
                              catalogue=f"sqlite:///{tmp_path}/{name}.sqlite"))
    # moto refuses a PUT with Object Lock retention unless it sees Content-MD5 or the
    # header botocore adds when it computes a checksum itself; ElliptIO sends its own
    # x-amz-checksum-sha256, which AWS and SeaweedFS accept, moto does not look for
    lake.store.client.meta.events.register("before-sign.s3.PutObject", _name_the_checksum)
    return lake


def _name_the_checksum(request, **_) -> None:
    # moto 5.2 accepts the algorithm's name; moto 5.0 (the lowest bound) wants Content-MD5
    if "x-amz-checksum-sha256" in request.headers:
        request.headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
        body = request.body
        if hasattr(body, "read"):  # a file object: read it and put it back
            at = body.tell()
            data = body.read()
            body.seek(at)
        else:
            data = bytes(body or b"")
        if "Content-MD5" not in request.headers:
            request.headers["Content-MD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()


def refused(call) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def test_each_identity_writes_only_under_its_own_user(moto_iam, monkeypatch, tmp_path):
    endpoint, keys = moto_iam
    src = tmp_path / "train.txt"
    src.write_bytes(b"alice's data\n")

    alice = lake_as(monkeypatch, tmp_path, "alice", keys["alice"], "alice")
    try:
        a = alice.save([str(src)], info={"type": "dataset"})
        assert a.prefix.split("/")[3] == "alice"
        assert alice.load(a.id).files["train.txt"].read_bytes() == b"alice's data\n"
    finally:
        alice.close()

    mallory = s3_as(endpoint, keys["mallory"])
    day = "/".join(a.prefix.split("/")[:3])  # YYYY/MM/DD
    assert re.fullmatch(r"[0-9]{4}/[0-9]{2}/[0-9]{2}", day)
    # reading everything: Alice's metadata and file
    got = mallory.get_object(Bucket=BUCKET, Key=f"{a.prefix}/train.txt")["Body"].read()
    assert got == b"alice's data\n"
    planted = b"id: x\nuser: alice\n"
    for key in (f"{day}/alice/{new_id()}/.eio/metadata.yaml",   # a new artifact of hers
                f"{a.prefix}/train.txt",                        # a new version on her file
                f"{a.prefix}/mallory/x.txt",                    # inside hers, at mallory/
                f"x/{day}/mallory/{new_id()}/y",                # elsewhere than the root
                "mallory/loose.txt"):                           # outside the layout
        assert refused(lambda k=key: mallory.put_object(Bucket=BUCKET, Key=k,
                                                        Body=planted)) == "AccessDenied", key
    assert mallory.get_object(Bucket=BUCKET, Key=f"{a.prefix}/train.txt")[
        "Body"].read() == b"alice's data\n"
    # her own prefix is hers
    own = f"{day}/mallory/{new_id()}/notes.txt"
    mallory.put_object(Bucket=BUCKET, Key=own, Body=b"mine")
    assert mallory.get_object(Bucket=BUCKET, Key=own)["Body"].read() == b"mine"

    # through ElliptIO: mallory cannot save as alice (the user segment is the IAM name)
    posing = lake_as(monkeypatch, tmp_path, "alice", keys["mallory"], "posing")
    try:
        with pytest.raises(StorageError):
            posing.save([str(src)])
    finally:
        posing.close()
    honest = lake_as(monkeypatch, tmp_path, "mallory", keys["mallory"], "honest")
    try:
        m = honest.save([str(src)])
        assert m.prefix.split("/")[3] == "mallory"
    finally:
        honest.close()


def test_the_enforcement_is_on(moto_iam):
    """Without this the test above could pass against a server that refuses nothing."""
    endpoint, _ = moto_iam
    stranger = s3_as(endpoint, {"aws_access_key_id": "AKIANOBODY0000000000",
                                "aws_secret_access_key": "nope"})
    assert refused(lambda: stranger.put_object(Bucket=BUCKET, Key="a", Body=b"x")) in (
        "InvalidAccessKeyId", "AccessDenied")
