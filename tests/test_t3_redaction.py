"""The redaction corpus: realistic secrets never survive :mod:`elliptio.redact` in any
context a save captures (plain text, after a ``KEY=`` label, a command line, a git diff's
``+`` and ``-`` lines, an environment value), harmless look-alikes survive byte for byte,
and a real save with secrets planted everywhere stores none of them."""

from __future__ import annotations

import hashlib
import shlex
import sqlite3
import string
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

import elliptio as eio
from elliptio import provenance
from elliptio.redact import MARK, redact, redact_argv, redact_url, secret_name

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


def rnd(seed: str, n: int, alphabet: str = ALNUM) -> str:
    """A fixed random-looking string: each corpus value is distinct and realistic."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        out.extend(alphabet[b % len(alphabet)]
                   for b in hashlib.sha256(f"{seed}/{i}".encode()).digest())
        i += 1
    return "".join(out[:n])


class Secret(NamedTuple):
    name: str
    text: str
    secrets: tuple[str, ...]  # each must be absent from every redacted form
    shell: bool = False  # a command line: also tried split into argv words


def _pem(kind: str, seed: str, lines: int = 4, sep: str = "\n") -> tuple[str, tuple[str, ...]]:
    body = [rnd(f"{seed}{i}", 64, B64) for i in range(lines)]
    return (f"-----BEGIN {kind}-----{sep}" + sep.join(body) + f"{sep}-----END {kind}-----",
            tuple(body))


RSA, RSA_BODY = _pem("RSA PRIVATE KEY", "rsa")
PKCS8, PKCS8_BODY = _pem("PRIVATE KEY", "pkcs8", 3)
EC_ESC, EC_BODY = _pem("EC PRIVATE KEY", "ec", 2, sep="\\n")
OPENSSH, OPENSSH_BODY = _pem("OPENSSH PRIVATE KEY", "openssh", 5)
PGP, PGP_BODY = _pem("PGP PRIVATE KEY BLOCK", "pgp", 6)
ENCRYPTED, ENCRYPTED_BODY = _pem("ENCRYPTED PRIVATE KEY", "enc", 3)
SA_KEY, SA_BODY = _pem("PRIVATE KEY", "sa", 3, sep="\\n")

T = {k: rnd(k, 36) for k in ("ghp", "gho", "ghu", "ghs", "ghr", "hf", "npm")}
AWS_SECRET = rnd("aws-secret", 40, B64)
AWS_SECRET2 = rnd("aws-secret-2", 40, B64)
AZURE_KEY = rnd("azure", 86, B64) + "=="
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJ" + rnd("jwt-payload", 40, URLSAFE)
       + "." + rnd("jwt-sig", 43, URLSAFE))
JWT2 = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ." + "eyJ" + rnd("jwt2-payload", 60, URLSAFE)
        + "." + rnd("jwt2-sig", 86, URLSAFE))

CORPUS: list[Secret] = [
    # GitHub
    Secret("github-ghp", f"GH_CLONE_WITH ghp_{T['ghp']}", (T["ghp"],)),
    Secret("github-gho", f"oauth: gho_{T['gho']}", (T["gho"],)),
    Secret("github-ghu", f"ghu_{T['ghu']}", (T["ghu"],)),
    Secret("github-ghs", f"x-access-token ghs_{T['ghs']}", (T["ghs"],)),
    Secret("github-ghr", f"refresh=ghr_{T['ghr']}", (T["ghr"],)),
    Secret("github-fine-grained", "github_pat_11ABKQ5ZI0" + (s := rnd("ghpat", 60, ALNUM + "_")),
           (s,)),
    # GitLab
    Secret("gitlab-pat", "glpat-" + (s := rnd("glpat", 20, URLSAFE)), (s,)),
    Secret("gitlab-deploy", "gldt-" + (s := rnd("gldt", 20, URLSAFE)), (s,)),
    Secret("gitlab-runner", "glrt-" + (s := rnd("glrt", 20, URLSAFE)), (s,)),
    Secret("gitlab-runner-registration", "GR1348941" + (s := rnd("gr", 20, URLSAFE)), (s,)),
    # Slack
    Secret("slack-bot", "xoxb-2748291039-5829103948572-" + (s := rnd("xoxb", 24)), (s,)),
    Secret("slack-user", "xoxp-2748291039-2748291040-5829103948573-" + (s := rnd("xoxp", 32, HEX)),
           (s,)),
    Secret("slack-app", "xapp-1-A05BZ8L2K9Q-5829103948574-" + (s := rnd("xapp", 64, HEX)), (s,)),
    Secret("slack-webhook", "https://hooks.slack.com/services/T024BE7LD/B05C1M2N3P4/"
           + (s := rnd("webhook", 24)), ("B05C1M2N3P4/" + s, s)),
    # Stripe
    Secret("stripe-live", "sk_live_51Hq" + (s := rnd("sk_live", 90)), (s,)),
    Secret("stripe-restricted", "rk_live_51Hq" + (s := rnd("rk_live", 90)), (s,)),
    Secret("stripe-test", "STRIPE=sk_test_4eC3" + (s := rnd("sk_test", 20)), (s,)),
    Secret("stripe-webhook", "whsec_" + (s := rnd("whsec", 32)), (s,)),
    # OpenAI, Anthropic
    Secret("openai-legacy", "sk-" + (s := rnd("openai", 20) + "T3BlbkFJ" + rnd("openai2", 20)),
           (s,)),
    Secret("openai-project", "sk-proj-" + (s := rnd("proj", 120, URLSAFE)), (s,)),
    Secret("openai-service", "sk-svcacct-" + (s := rnd("svcacct", 80, URLSAFE)), (s,)),
    Secret("anthropic", "sk-ant-api03-" + (s := rnd("ant", 93, URLSAFE)) + "AA", (s,)),
    # Hugging Face
    Secret("huggingface", f"hf_{T['hf']}", (T["hf"],)),
    Secret("huggingface-org", "api_org_" + (s := rnd("api_org", 34)), (s,)),
    # Google
    Secret("google-api-key", "AIza" + (s := rnd("aiza", 35, URLSAFE)), (s,)),
    Secret("google-oauth", "ya29.a0Af" + (s := rnd("ya29", 120, URLSAFE)), (s,)),
    Secret("google-client-secret", "GOCSPX-" + (s := rnd("gocspx", 28, URLSAFE)), (s,)),
    Secret("google-service-account",
           '{"type": "service_account", "project_id": "proj", "private_key_id": "'
           + (kid := rnd("kid", 40, HEX)) + f'", "private_key": "{SA_KEY}\\n", '
           '"client_email": "svc@proj.iam.gserviceaccount.com"}', (kid, *SA_BODY)),
    # Azure
    Secret("azure-connection-string",
           "DefaultEndpointsProtocol=https;AccountName=stacct;"
           f"AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net", (AZURE_KEY, AZURE_KEY[:40])),
    Secret("azure-sas", "https://stacct.blob.core.windows.net/c/f.csv?sv=2022-11-02&ss=b&srt=o"
           "&sp=r&se=2030-01-01T00:00:00Z&sig=" + (s := rnd("sas", 43, B64) + "%3D"), (s[:43],)),
    Secret("azure-servicebus", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName="
           "RootManageSharedAccessKey;SharedAccessKey=" + (s := rnd("sbkey", 43, B64) + "="),
           (s,)),
    # AWS
    Secret("aws-access-key-id", "AKIA" + (s := rnd("akia", 16, string.ascii_uppercase + "234567")),
           (s,)),
    Secret("aws-session-key-id", "ASIA" + (s := rnd("asia", 16, string.ascii_uppercase + "234567")),
           (s,)),
    Secret("aws-secret-ini", f"aws_secret_access_key = {AWS_SECRET}", (AWS_SECRET,)),
    Secret("aws-secret-python", f'os.environ["AWS_SECRET_ACCESS_KEY"] = "{AWS_SECRET2}"',
           (AWS_SECRET2,)),
    Secret("aws-session-token", "AWS_SESSION_TOKEN=IQoJb3JpZ2luX2Vj" + (s := rnd("sts", 200, B64)),
           (s,)),
    # JWTs
    Secret("jwt", JWT, (JWT.split(".", 1)[1],)),
    Secret("jwt-bearer", f"Authorization: Bearer {JWT2}", (JWT2.split(".", 1)[1],)),
    # private-key blocks
    Secret("pem-rsa", RSA, RSA_BODY),
    Secret("pem-after-label", "PRIVATE_KEY=" + PKCS8, PKCS8_BODY),
    Secret("pem-escaped-quoted", f'EC_KEY="{EC_ESC}"', EC_BODY),
    Secret("openssh", OPENSSH, OPENSSH_BODY),
    Secret("pgp", PGP.replace("-----\n", "-----\nVersion: GnuPG v2\n\n", 1), PGP_BODY),
    Secret("pem-encrypted", ENCRYPTED, ENCRYPTED_BODY),
    # credentials in URLs
    Secret("url-password-at", "https://deploy:" + (s := "p@ss" + rnd("urlat", 10))
           + "@git.example.com/t/p.git", (s, s[4:])),
    Secret("url-password-slash-hash", "postgres://etl:" + (s := "Zq/" + rnd("urlsl", 8) + "#x")
           + "@db.internal:5432/warehouse", (s, s[3:11])),
    Secret("url-token-user", "pip @ git+https://" + (s := rnd("piptok", 40, HEX))
           + "@github.com/org/private-pkg@v1.2", (s,)),
    Secret("url-mongo-srv", "mongodb+srv://analyst:" + (s := rnd("mongo", 16))
           + "@cluster0.ab1cd.mongodb.net/?retryWrites=true", (s,)),
    Secret("url-s3-keys", "s3://AKIDEXAMPLE:" + (s := rnd("s3url", 30, B64)) + "@bucket/team",
           (s,)),
    Secret("url-amqp-empty-user", "amqp://:" + (s := rnd("amqp", 14)) + "@mq.internal:5672/",
           (s,)),
    # a value labelled by a secret name
    Secret("env-db-pass", "DB_PASS=" + (s := "Tr0ub4dor&3" + rnd("dbpass", 6)), (s, s[:9])),
    Secret("export-mysql-pwd", "export MYSQL_PWD=" + (s := rnd("mysqlpwd", 14)), (s,),
           shell=True),
    Secret("pgpassword", "PGPASSWORD=" + (s := rnd("pgpw", 18)) + " psql -h db etl", (s,),
           shell=True),
    Secret("json-api-key", '{"api_key": "' + (s := rnd("jsonapikey", 32, HEX)) + '", "n": 1}',
           (s,)),
    Secret("yaml-client-secret", "oauth:\n  client_id: 1234\n  client_secret: "
           + (s := rnd("yamlsecret", 30)), (s,)),
    Secret("ini-password-spaces", 'password = "' + (s := "correct horse " + rnd("ini", 10))
           + '"', (s, s[:13])),
    Secret("camel-api-key", "apiKey: '" + (s := rnd("camel", 26)) + "'", (s,)),
    Secret("django-secret-key", "SECRET_KEY = 'django-insecure-" + (s := rnd("django", 40))
           + "'", (s,)),
    Secret("setenv-call", 'monkeypatch.setenv("DATABASE_PASSWORD", "' + (s := rnd("setenv", 20))
           + '")', (s,)),
    Secret("xml-password", "<password>" + (s := rnd("xml", 16)) + "</password>", (s,)),
    # command-line forms
    Secret("mysql-p", "mysql -h db.internal -u root -p" + (s := rnd("mysqlp", 12)) + " sales",
           (s,), shell=True),
    Secret("mysqldump-p", "mysqldump -uroot -p" + (s := rnd("dump", 12)) + " --all-databases",
           (s,), shell=True),
    Secret("curl-u", "curl -u alice:" + (s := rnd("curlu", 14)) + " https://api.example.com/v1",
           (s,), shell=True),
    Secret("curl-user", "curl --user bob:" + (s := rnd("curluser", 14)) + " -X POST https://x.io",
           (s,), shell=True),
    Secret("flag-db-pass", "train.py --db-pass " + (s := rnd("dbpassflag", 12)) + " --lr 0.1",
           (s,), shell=True),
    Secret("flag-password-equals", "run --admin-password=" + (s := rnd("pweq", 14)), (s,),
           shell=True),
    Secret("flag-token-equals", "deploy --api-token=" + (s := rnd("tokeq", 24)), (s,),
           shell=True),
    Secret("flag-secret-space", "sync --client-secret " + (s := rnd("secsp", 24)) + " -v", (s,),
           shell=True),
    Secret("sshpass", "sshpass -p " + (s := rnd("sshpass", 12)) + " ssh deploy@host", (s,),
           shell=True),
    Secret("redis-cli", "redis-cli -h cache -a " + (s := rnd("redis", 16)) + " ping", (s,),
           shell=True),
    Secret("curl-header-token", 'curl -H "Authorization: token ' + (s := rnd("hdrtok", 40, HEX))
           + '" https://api.example.com', (s,), shell=True),
    Secret("curl-oauth2-bearer", "curl --oauth2-bearer " + (s := rnd("bearer", 40, URLSAFE))
           + " https://api.example.com", (s,), shell=True),
    Secret("python-header-fstring", '{"Authorization": f"Bearer ' + (s := rnd("fbearer", 32))
           + '"}', (s,)),
    Secret("basic-auth-header", "Authorization: Basic " + (s := "YWxpY2U6" + rnd("basic", 16, B64))
           + "==", (s,)),
    Secret("api-key-header", 'curl -H "X-Api-Key: ' + (s := rnd("xapikey", 32)) + '" https://x',
           (s,), shell=True),
    Secret("cookie-header", "Cookie: session=" + (s := rnd("cookie", 40)) + "; theme=dark", (s,)),
    # other services
    Secret("npm", f"//registry.npmjs.org/:_authToken=npm_{T['npm']}", (T["npm"],)),
    Secret("pypi", "pypi-AgEIcHlwaS5vcmc" + (s := rnd("pypi", 70, URLSAFE)), (s,)),
    Secret("sendgrid", "SG." + (s := rnd("sg1", 22, URLSAFE) + "." + rnd("sg2", 43, URLSAFE)),
           (s,)),
    Secret("docker-pat", "dckr_pat_" + (s := rnd("docker", 27, URLSAFE)), (s,)),
    Secret("digitalocean", "dop_v1_" + (s := rnd("do", 64, HEX)), (s,)),
    Secret("databricks", "dapi" + (s := rnd("dapi", 32, HEX)), (s,)),
]

LOOKALIKES: list[str] = [
    "commit " + hashlib.sha1(b"commit").hexdigest(),
    "sha256:" + hashlib.sha256(b"digest").hexdigest(),
    "id 6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b",
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
    "RU5ErkJggg==",
    "\n".join(rnd(f"b64blob{i}", 76, B64) for i in range(3)) + "==",
    "elliptio==0.4.1 numpy==2.1.3 torch==2.5.1+cu121 version 1.2.3rc1",
    "scikit-learn==1.5.2",
    "pip install sk-learn is deprecated: use scikit-learn",
    "KEY_COUNT=3",
    "--password-file /run/secrets/db_password",
    "tokenizer=bert-base-uncased",
    "passthrough=true bypass_cache=1",
    "monkey=42 keyboard=us author: Jane Doe",
    "/home/andy/projects/tokens/train.txt /etc/ssl/private/server.pem ~/.ssh/keys/README",
    "generate(max_tokens=512) --max-new-tokens 256 num_tokens: 1024",
    'pad_token_id=0 eos_token="</s>" bos_token: <s>',
    "sort_key=created_at primary_key=id public_key: ssh-ed25519",
    "https://github.com/org/repo.git git@github.com:org/repo.git ssh://git@host/repo.git",
    "mail andy@example.com",
    "docker run -u 1000:1000 -p 8080:80 image:latest",
    "python -u train.py && gcc -pthread -O2 x.c && ssh -p 2222 host",
    "-----BEGIN CERTIFICATE-----\n" + rnd("cert", 64, B64) + "\n-----END CERTIFICATE-----",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ" + rnd("sshpub", 60, B64) + " andy@laptop",
    "AUTH_TYPE=oauth TOKEN_URL=https://auth.example.com/oauth/token",
    "def login(api_key: str, password: str | None = None) -> None:",
    "Basic configuration: a bearer token is required",
    'hf_hub_download(repo_id="gpt2", filename="config.json")',
    "Signed-off-by: Jane Doe <jane@example.com>",
    "SSH_AUTH_SOCK=/tmp/ssh-XXXXabcd/agent.1234",
    "lr=0.001 epochs=10 batch-size=32",
    "mongodb://db.internal:27017/?authSource=admin&authMechanism=SCRAM-SHA-256",
    "secret_name: db-credentials",
]


def diff_of(text: str, sign: str) -> str:
    body = "".join(sign + line + "\n" for line in text.split("\n"))
    return ("diff --git a/conf.env b/conf.env\nindex 83db48f..bf269f4 100644\n"
            "--- a/conf.env\n+++ b/conf.env\n@@ -1,2 +1,2 @@\n keep=1\n" + body)


def contexts(text: str, shell: bool = False) -> dict[str, str]:
    """Each form in which a save captures *text*, redacted."""
    out = {
        "plain": redact(text),
        "in-a-sentence": redact(f"note: {text} (rotated)"),
        "KEY=": redact(f"EXTRA_SETTING={text}"),
        "argv": "\0".join(redact_argv(["prog", text])),
        "argv-after-flag": "\0".join(redact_argv(["prog", "--note", text])),
        "diff+": redact(diff_of(text, "+")),
        "diff-": redact(diff_of(text, "-")),
    }
    if shell:
        out["argv-split"] = "\0".join(redact_argv(shlex.split(text)))
    return out


def test_the_corpus_is_as_large_as_promised():
    assert len(CORPUS) >= 60 and len(LOOKALIKES) >= 20
    values = [s for c in CORPUS for s in c.secrets]
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    assert len(set(values)) == len(values), "each secret value is distinct"
    assert all(len(s) >= 8 for s in values)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_secret_is_absent_from_every_context(case: Secret, monkeypatch):
    forms = contexts(case.text, case.shell)
    monkeypatch.setenv("SLURM_JOB_NAME", case.text)
    forms["env"] = provenance.capture_env()["SLURM_JOB_NAME"]
    for where, out in forms.items():
        assert MARK in out, (where, out)
        for secret in case.secrets:
            assert secret not in out, (where, secret, out)


@pytest.mark.parametrize("text", LOOKALIKES, ids=[f"lookalike{i}" for i in range(len(LOOKALIKES))])
def test_lookalike_survives_byte_for_byte(text: str, monkeypatch):
    assert redact(text) == text
    for sign in "+-":
        assert redact(diff_of(text, sign)) == diff_of(text, sign)
    assert redact_argv(["prog", text]) == ["prog", text]
    if "\n" not in text:
        words = shlex.split(text, posix=False)
        assert redact_argv(words) == words
    monkeypatch.setenv("SLURM_JOB_NAME", text)
    assert provenance.capture_env()["SLURM_JOB_NAME"] == text


@pytest.mark.parametrize("text,expected", [
    ("DB_PASS=hunter2hunter2", "DB_PASS=***"),
    ('"api_key": "0123456789abcdef"', '"api_key": "***"'),
    ("https://andy:s3cr3t@git.example.com/t/p.git", "https://***@git.example.com/t/p.git"),
    ("mysql -u root -phunter2 db", "mysql -u root -p*** db"),
    ("curl -u alice:pw99 https://x", "curl -u alice:*** https://x"),
    ("--db-pass pw123456 --lr 0.1", "--db-pass *** --lr 0.1"),
    ("AccountName=a;AccountKey=abcd1234==;EndpointSuffix=core.windows.net",
     "AccountName=a;AccountKey=***;EndpointSuffix=core.windows.net"),
    ("ghp_" + "a1" * 18, "ghp_***"),
    ("+-----BEGIN RSA PRIVATE KEY-----\n+MIIEow" + "A" * 40 + "\n+-----END RSA PRIVATE KEY-----",
     "+-----BEGIN RSA PRIVATE KEY-----\n+***\n+-----END RSA PRIVATE KEY-----"),
])
def test_the_label_stays_and_only_the_secret_goes(text, expected):
    assert redact(text) == expected


def test_redaction_is_idempotent():
    for case in CORPUS:
        once = redact(case.text)
        assert redact(once) == once, case.name


def test_argv_hides_the_value_after_a_secret_flag():
    argv = ["train.py", "--db-pass", "pw1", "--api-token", "tok2", "--password-file", "/run/pw",
            "--token", "--verbose", "--lr", "0.1", "KEY_COUNT=3"]
    assert redact_argv(argv) == ["train.py", "--db-pass", "***", "--api-token", "***",
                                 "--password-file", "/run/pw", "--token", "--verbose",
                                 "--lr", "0.1", "KEY_COUNT=3"]
    assert redact_argv(["sshpass", "-p", "pw3", "ssh", "h"]) == ["sshpass", "-p", "***", "ssh", "h"]
    assert redact_argv(["/usr/bin/mysql", "-p", "sales"]) == ["/usr/bin/mysql", "-p", "sales"]
    assert redact_argv(["curl", "-ualice:pw4", "x"]) == ["curl", "-ualice:***", "x"]


@pytest.mark.parametrize("name,secret", [
    ("DB_PASS", True), ("GITHUB_TOKEN", True), ("AccountKey", True), ("PGPASSWORD", True),
    ("clientSecret", True), ("--x-pass", True), ("key", True), ("private_key_id", True),
    ("KEY_COUNT", False), ("password-file", False), ("keyboard", False), ("monkey", False),
    ("tokenizer", False), ("passthrough", False), ("max_tokens", False), ("pad_token", False),
    ("sort_key", False), ("author", False), ("TOKEN_URL", False),
])
def test_secret_names(name, secret):
    assert secret_name(name) is secret


@pytest.mark.parametrize("url,secret", [
    ("s3://key:supersecretvalue@bucket/x", "supersecretvalue"),
    ("mongodb://eio:s3cret-pw@127.0.0.1:9/?serverSelectionTimeoutMS=100", "s3cret-pw"),
    ("https://user:p@ss/w#rd@host/x", "p@ss/w#rd"),
    ("https://ghp_" + "b2" * 18 + "@github.com/o/r", "b2b2b2b2"),
])
def test_redact_url_strips_credentials(url, secret):
    out = redact_url(url)
    assert secret not in out and "***@" in out


def test_a_large_diff_is_redacted_quickly():
    import time

    text = "\n".join(f"+line {i} = {rnd(str(i), 60, B64)}" for i in range(20000))
    start = time.monotonic()
    assert redact(text) == text
    assert time.monotonic() - start < 5


# -- end to end: a real save ---------------------------------------------------------------
def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x",
                        "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_a_save_stores_no_planted_secret(tmp_path: Path, lake_env, monkeypatch):
    planted = {
        "argv": rnd("e2e-argv", 20),
        "argv_eq": rnd("e2e-argv-eq", 22),
        "mysql": rnd("e2e-mysql", 12),
        "env": rnd("e2e-env", 18),
        "diff_added": rnd("e2e-added", 24),
        "diff_removed": rnd("e2e-removed", 24),
        "pem": rnd("e2e-pem", 64, B64),
        "untracked": rnd("e2e-untracked", 36),
        "remote": rnd("e2e-remote", 20, URLSAFE),
    }
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "config.py").write_text(f'DB_PASS = "{planted["diff_removed"]}"\nlr = 0.1\n')
    git(r, "add", "config.py")
    git(r, "commit", "-qm", "first")
    git(r, "remote", "add", "origin",
        f"https://oauth2:glpat-{planted['remote']}@gitlab.example.com/team/proj.git")
    (r / "config.py").write_text(
        f'os.environ["AWS_SECRET_ACCESS_KEY"] = "{planted["diff_added"]}"\nlr = 0.2\n'
        f"PRIVATE_KEY=-----BEGIN RSA PRIVATE KEY-----\n{planted['pem']}\n"
        "-----END RSA PRIVATE KEY-----\n")
    (r / f"ghp_{planted['untracked']}.json").write_text("{}")
    (r / "data.txt").write_text("data")
    monkeypatch.chdir(r)
    monkeypatch.setattr(sys, "argv", [
        "train.py", "--db-pass", planted["argv"], f"--api-token={planted['argv_eq']}",
        "--cmd", f"mysql -uroot -p{planted['mysql']} sales"])
    monkeypatch.setenv("SLURM_JOB_NAME", f"load https://etl:{planted['env']}@db.internal/x")

    a = eio.save(["data.txt"])

    # the planted values were captured (redacted), so their absence below means something
    g = a.provenance["git"]
    assert g["remote_url"] == "https://***@gitlab.example.com/team/proj.git"
    assert "lr = 0.2" in a.logs.git_diff.read_text()
    assert "ghp_***.json" in a.logs.git_untracked.read_text()
    assert a.provenance["argv"][:3] == ["train.py", "--db-pass", "***"]
    assert a.provenance["env"]["SLURM_JOB_NAME"] == "load https://***@db.internal/x"
    store = Path(lake_env["ELLIPTIO_STORE"].removeprefix("file://"))
    metadata = [p for p in store.rglob("metadata.yaml")]
    assert len(metadata) == 1
    stored = b"".join(p.read_bytes() for p in store.rglob("*") if p.is_file())
    cat_path = lake_env["ELLIPTIO_CATALOGUE"].removeprefix("sqlite:///")
    con = sqlite3.connect(cat_path)
    try:
        # every table but the search index's virtual table (contentless: it cannot be
        # read back; its shadow tables, which hold what it stores, are read)
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                            " AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'")]
        rows = repr([con.execute(f"SELECT * FROM {t}").fetchall() for t in tables])
    finally:
        con.close()
    assert a.id in rows
    catalogue_files = b"".join(p.read_bytes() for p in Path(cat_path).parent.glob(
        Path(cat_path).name + "*"))
    for what, value in planted.items():
        assert value.encode() not in metadata[0].read_bytes(), what
        assert value.encode() not in stored, what
        assert value not in rows, what
        assert value.encode() not in catalogue_files, what


# -- messages ------------------------------------------------------------------------------
def test_no_message_prints_a_url_credential(tmp_path: Path, lake_env):
    import os

    secret = "Qv7" + rnd("message-secret", 20)
    src = tmp_path / "f"
    src.write_bytes(b"data")
    cases = [  # (variable, URL, the save fails: else it is saved, with a warning)
        ("ELLIPTIO_STORE", f"file://andy:{secret}@fileserver/lake", True),
        ("ELLIPTIO_STORE", f"ftp://andy:{secret}@files.example.com/lake", True),
        ("ELLIPTIO_STORE", f"memory://andy:{secret}@x", True),
        ("ELLIPTIO_CATALOGUE", f"postgres://andy:{secret}@127.0.0.1:9/lake", False),
        ("ELLIPTIO_CATALOGUE", f"redis://andy:{secret}@db.example.com/lake", True),
        ("ELLIPTIO_CATALOGUE", f"sqlite://andy:{secret}@host/relative.sqlite", True),
        ("ELLIPTIO_CATALOGUE",
         f"mongodb://andy:{secret}@127.0.0.1:9/?serverSelectionTimeoutMS=100", False),
    ]
    for var, url, fails in cases:
        proc = subprocess.run([sys.executable, "-m", "elliptio", "save", str(src)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, var: url})
        assert (proc.returncode != 0) is fails, (url, proc.stderr)
        if fails:
            assert proc.stderr.strip(), url
        else:
            assert "127.0.0.1:9" in proc.stderr, proc.stderr  # the warning names it
        # the message is about the URL, and it hides the secret
        assert secret not in proc.stdout + proc.stderr, (url, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
    shown = subprocess.run([sys.executable, "-m", "elliptio", "config"], capture_output=True,
                           text=True, timeout=120, check=True,
                           env={**os.environ, "ELLIPTIO_CATALOGUE": cases[-1][1]}).stdout
    assert "mongodb://***@127.0.0.1:9" in shown and secret not in shown
