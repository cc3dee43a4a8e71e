"""Secrets out of every text ElliptIO captures or prints.

:func:`redact` is applied to every captured text of a save (command line, environment
values, git summary fields, remote URL, diff, untracked file names, pip freeze) and
:func:`redact_url` to every store or catalogue URL a message, a log line or
``Catalogue.url`` shows. :func:`redact_argv` is :func:`redact` for a command line, where a
secret flag's value is the next element.

What is replaced keeps its label, so provenance stays readable: ``DB_PASS=***``,
``https://***@host/repo.git``, ``ghp_***``, ``-----BEGIN RSA PRIVATE KEY-----`` and
``-----END …-----`` around ``***`` lines (a diff's ``+``/``-`` prefixes kept).

What counts as a secret:

- known token formats, anywhere: GitHub (``ghp_ gho_ ghu_ ghs_ ghr_ github_pat_``),
  GitLab (``glpat- gldt- glrt- glptt- glft- glsoat- glcbt- glimt- glagent- gloas-``,
  runner ``GR1348941…``), Slack (``xox[abposre]-``, ``xapp-``, webhook URLs), Stripe
  (``sk_/rk_ live/test``, ``whsec_``), OpenAI and Anthropic (``sk-…``, ``sk-proj-…``,
  ``sk-ant-…``: at least 32 characters with a digit, so ``sk-learn`` is a word), Hugging
  Face (``hf_``, ``api_org_``), Google (``AIza``, ``ya29.``, ``GOCSPX-``), AWS key ids
  (``AKIA ASIA ABIA ACCA``), npm, PyPI, SendGrid, Docker, DigitalOcean, Databricks,
  Shopify; JWTs (``eyJ….….…``);
- private-key blocks (PEM, OpenSSH, PGP, also written with ``\\n`` escapes or inside a
  diff), through their END line; a BEGIN without END hides the base64 lines after it;
- credentials in URLs, ``scheme://user:pass@host`` (the password may hold ``@ / #``: the
  credentials end at the last ``@`` of the URL) and ``https://token@host``; an ``ssh://``
  URL keeps its user (``git@``), which is never a secret there;
- a value labelled by a secret name: ``NAME=v``, ``NAME: v``, ``"name": "v"``,
  ``--name=v``, ``--name v``, ``env["NAME"] = "v"``, ``setenv("NAME", "v")``,
  ``<name>v</name>``; HTTP ``Authorization``/``Cookie`` headers, ``Bearer``/``Basic``
  credentials; ``mysql -pX``, ``curl -u user:X``, ``sshpass -p X``, ``redis-cli -a X``.

A name is secret when one of its words (split at ``_ - .`` and camelCase) is one of
:data:`SECRET_WORDS` or ends in one of :data:`SECRET_SUFFIXES` (``PGPASSWORD``,
``clientsecret``). Decisions, each in favour of what a reader of provenance expects:

- A name whose *last* word says it is not the secret itself keeps its value
  (:data:`ABOUT_WORDS`: ``KEY_COUNT=3``, ``--password-file /run/secrets/db``,
  ``TOKEN_URL``, ``AUTH_TYPE``, ``max_token_length``): a path or a count is provenance,
  and what lies in that file is not captured. ``PRIVATE_KEY_ID`` is still secret.
- Words only look alike: ``keyboard``, ``monkey``, ``tokenizer``, ``passthrough``,
  ``author``, ``bypass``, ``max_tokens`` are not secret names; nor are ``sort_key``,
  ``primary_key``, ``public_key``, ``pad_token``, ``eos_token`` and the like
  (:data:`HARMLESS_BEFORE`). A bare ``key`` is secret.
- Values that say nothing (``None``, ``true``, ``str``, ``""``) are left as they are.
- Hex and base64 are never redacted for their looks alone: commit hashes, sha256
  digests, UUIDs and base64 data in a diff are provenance. So an unlabelled AWS secret
  key (40 base64 characters) or a password alone on a line is not found, and a diff that
  changes only middle lines of a private key (no BEGIN line in the hunk) shows them.
- A false positive hides a harmless value and is accepted where the choice is between it
  and a leak: prose such as ``--token to`` or ``Authorization: …`` loses the words after
  the label; a URL whose path holds a second ``@`` loses the path up to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

__all__ = ["MARK", "redact", "redact_argv", "redact_url", "secret_name"]

MARK = "***"

#: words of a name that make its value a secret
SECRET_WORDS = frozenset({
    "pass", "passwd", "password", "passphrase", "pwd", "pw", "secret", "secrets", "token",
    "key", "apikey", "credential", "credentials", "creds", "auth", "sig", "signature",
    "cookie", "passin", "passout", "bearer",
})
#: a word ending in one of these is a secret word too (``pgpassword``, ``clientsecret``)
SECRET_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token", "apikey",
                   "accesskey", "secretkey", "privatekey", "authkey", "signingkey",
                   "credential", "credentials")
#: a last word that says the value is about the secret, not the secret
ABOUT_WORDS = frozenset({
    "count", "num", "number", "len", "length", "size", "bits", "file", "files", "path",
    "paths", "dir", "directory", "type", "types", "kind", "name", "names", "format", "fmt",
    "algorithm", "alg", "algo", "mode", "ttl", "expiry", "expires", "expiration",
    "timeout", "lifetime", "limit", "min", "max", "enabled", "enable", "disabled",
    "required", "policy", "version", "header", "field", "column", "col", "env", "var",
    "url", "uri", "endpoint", "host", "port", "source", "mechanism", "method", "scheme",
    "provider", "backend", "prefix", "suffix", "encoding", "sock", "socket", "command",
    "cmd", "helper", "prompt", "location", "rotation", "index", "strength",
})
#: words that, just before a secret word, make it something else (a dict key, a
#: tokenizer's special token, a public key)
HARMLESS_BEFORE = {
    "key": frozenset({"sort", "primary", "foreign", "partition", "join", "cache", "group",
                      "lookup", "index", "unique", "composite", "row", "column", "shard",
                      "routing", "order", "object", "hash", "dict", "map", "range",
                      "public", "pub", "hot", "short", "dedup", "idempotency"}),
    "token": frozenset({"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special",
                        "start", "end", "max", "min", "num", "n", "total", "input",
                        "output", "prompt", "completion", "new", "context", "vocab",
                        "per", "next", "page", "continuation"}),
}
_SAYS_NOTHING = frozenset({"None", "none", "null", "nil", "true", "false", "True", "False",
                           "str", "bytes", "int", "bool", "Any", "Optional[str]",
                           "undefined", '""', "''"})


def _words(name: str) -> list[str]:
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return [w for w in re.split(r"[_.\-\s\"']+", name.lower()) if w]


def secret_name(name: str) -> bool:
    """Whether a value labelled *name* (a variable, key, header or flag name) is a
    secret; see the module docstring."""
    name = name.lstrip("-")
    if len(name) > 64 or (len(name) > 24 and not re.search(r"[_.-]", name)
                          and re.search(r"\d", name)):
        return False  # a run of base64, not a name
    words = _words(name)
    if not words or words[-1] in ABOUT_WORDS:
        return False
    for i, w in enumerate(words):
        if w in SECRET_WORDS or (len(w) > 5 and w.endswith(SECRET_SUFFIXES)):
            before = HARMLESS_BEFORE.get(w, frozenset())
            if not (i and words[i - 1] in before):
                return True
    return False


# -- the rules, in the order they are applied ------------------------------------------------
Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]

#: a private key through its END line, or (END missing) the base64 lines after BEGIN
_KEY_BLOCK = re.compile(
    r"(?P<begin>-----BEGIN (?P<kind>[A-Z0-9 ]*(?:PRIVATE|SECRET) KEY(?: BLOCK)?)-----)"
    r"(?:(?P<body>[\s\S]{0,65536}?)(?P<end>-----END (?P=kind)-----)"
    r"|(?P<open>(?:(?:\r?\n|\\n)[+\- ]?[A-Za-z0-9+/=]{16,})+))")


def _key_block(m: re.Match[str]) -> str:
    body = m["body"] if m["end"] else m["open"]
    # one MARK per body line, a diff's +/-/space prefix kept, so line counts stay
    hidden = re.sub(r"(?m)^([+\- ]?)(?![+\- ]?$)[^\n]+", r"\1" + MARK, body)
    return m["begin"] + hidden + (m["end"] or "")


_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9+.-]{0,30}://)"
    r"(?P<userinfo>[^\s/@:\"'`<>]*:[^\s\"'`<>]*@|[^\s/@:\"'`<>]+@)(?=[\w\[%.-])")


def _url_credentials(m: re.Match[str]) -> str:
    if ":" not in m["userinfo"] and m["scheme"].lower().startswith(("ssh:", "git+ssh:",
                                                                    "sftp:")):
        return m[0]  # ssh://git@host: the user of an ssh URL is not a secret
    return m["scheme"] + MARK + "@"


_T = r"(?<![A-Za-z0-9_])"  # a token starts after no token character
# the lookahead lets most positions fail at their first character
_TOKENS = re.compile("(?=[gGxhsrwaAyenpdS])(?:" + "|".join([
    _T + r"(?P<a>gh[pousr]_)[A-Za-z0-9]{20,}",
    _T + r"(?P<b>github_pat_)[A-Za-z0-9_]{22,}",
    _T + r"(?P<c>gl(?:pat|dt|rt|ptt|ft|soat|cbt|imt|agent|oas|ffct|wt)-)[A-Za-z0-9_-]{20,}",
    _T + r"(?P<d>GR1348941)[A-Za-z0-9_-]{20,}",
    _T + r"(?P<e>xox[abposre]-|xapp-)[A-Za-z0-9-]{10,}",
    r"(?P<f>hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]+",
    _T + r"(?P<g>(?:sk|rk)_(?:live|test)_|whsec_)[A-Za-z0-9]{10,}",
    _T + r"(?P<h>sk-(?:ant-(?:api|admin|sid)\d\d-|proj-|svcacct-|admin-)?)"
    r"(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{32,}",
    _T + r"(?P<i>hf_|api_org_)[A-Za-z0-9]{30,}",
    _T + r"(?P<j>AIza)[0-9A-Za-z_-]{35}",
    _T + r"(?P<k>ya29\.|GOCSPX-)[0-9A-Za-z_-]{20,}",
    _T + r"(?P<l>AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![0-9A-Za-z])",
    _T + r"(?P<m>eyJ)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
    _T + r"(?P<n>npm_|dckr_pat_)[A-Za-z0-9_-]{24,}",
    _T + r"(?P<o>pypi-)AgE[A-Za-z0-9_-]{50,}",
    _T + r"(?P<p>SG\.)[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
    _T + r"(?P<q>do[por]_v1_)[a-f0-9]{64}",
    _T + r"(?P<r>dapi)[a-f0-9]{32}(?:-\d)?(?![A-Za-z0-9])",
    _T + r"(?P<s>shp(?:at|ss|ca|pa)_)[a-fA-F0-9]{32}",
]) + ")")


def _token(m: re.Match[str]) -> str:
    return next(g for g in m.groups() if g is not None) + MARK


_HEADER = re.compile(
    r"(?im)(?P<label>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic|token|digest|negotiate|ntlm|aws4-hmac-sha256|apikey|sso-key)"
    r"\s+)?|\b(?:set-)?cookie\s*:\s*)(?P<v>(?!\*\*\*)[^\"'\r\n]+)")

_QUOTED = r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'"
#: a quoted value, its closing quote perhaps on another line
_QVAL = r"\"(?:\\.|[^\"\\\n])*\"?|'(?:\\.|[^'\\\n])*'?"
_BARE = r"[^\s\"'`;,)\]}]+"
#: ``env["NAME"] = v``, ``setenv("NAME", v)``, ``set(section, "NAME", v)``
_SUBSCRIPT = re.compile(
    r"(?P<label>(?:\[\s*|\(\s*(?:(?:" + _QUOTED + r")\s*,\s*)?)(?P<q>[\"'])(?P<name>[\w.-]+)"
    r"(?P=q)\s*(?:\]\s*=|,)\s*)(?P<v>" + _QVAL + "|" + _BARE + ")")
_XML = re.compile(r"(?P<label><(?P<name>[\w.-]+)>)(?P<v>[^<\n]+)(?=</(?P=name)>)")

_NAME = (r"(?P<name>[\w.-]*?(?i:pass|pwd|pw|secret|token|key|cred|auth|sig|cookie|bearer)"
         r"[\w.-]*)")
#: at a word's start, or after the ``-`` of a removed diff line
_START = r"(?:(?<![\w.-])|(?<=^-))"
_ASSIGN = re.compile(
    r"(?m)(?P<label>" + _START + r"(?:--?)?(?P<kq>[\"']?)" + _NAME + r"(?P=kq)"
    r"[ \t]*(?::=|=>|=(?!=)|:(?![:/]))[ \t]*)"
    r"(?P<v>(?![\"']?(?:\*\*\*|-----BEGIN)|[|>][-+]?\s*$)(?:" + _QVAL + r"|"
    r"(?:[^\s\"'`\\]|\\(?![nrt]))+?(?=[)\]}]*(?:[;&,]\s*[\w.-]+\s*[=:]|[\s\"'`]|\\[nrt]|$))"
    r"))")
_FLAG_SPACE = re.compile(
    r"(?m)(?P<label>" + _START + r"--?" + r"(?=[A-Za-z])" + _NAME + r"[ \t]+)"
    r"(?P<v>(?!\*\*\*|--?[A-Za-z])(?:" + _QVAL + r"|[^\s\"'`]+))")
#: commands whose short flags carry a password: (command, flag, value after a space too)
_COMMAND_FLAGS = (
    (r"(?:mysql\w*|mariadb[\w-]*)", "-p", False),
    (r"sshpass", "-p", True),
    (r"redis-cli", "-a", True),
)
_COMMANDS = [
    re.compile(r"(?m)(?P<label>" + _START + cmd + r"\b[^\n]*?(?<!\S)" + flag
               + (r"[ \t]*" if spaced else "") + r")(?P<v>(?!\*\*\*)[^\s\"']+)")
    for cmd, flag, spaced in _COMMAND_FLAGS
]
_CURL_USER = re.compile(
    r"(?m)(?P<label>" + _START + r"(?:curl|https?)\b[^\n]*?(?<!\S)"
    r"(?:-u|--user|-U|--proxy-user|-a)(?:[ \t]+|=)?[\"']?[^\s:\"']*:)(?P<v>(?!\*\*\*)[^\s\"']+)")
_BEARER = re.compile(r"(?i)(?P<label>\b(?:bearer|basic)[ \t]+)(?P<v>[A-Za-z0-9._~+/-]{8,}=*)")


def _labelled(check_name: bool) -> Callable[[re.Match[str]], str]:
    def replace(m: re.Match[str]) -> str:
        if check_name and not secret_name(m["name"]):
            return m[0]
        v = m["v"]
        if v in _SAYS_NOTHING or MARK in v:
            return m[0]
        if v[:1] in "\"'" and len(v) >= 2 and v[-1] == v[0]:
            v = v[0] + MARK + v[0]
        elif v[:1] in "\"'":
            v = v[0] + MARK
        else:
            v = MARK
        return m["label"] + v
    return replace


def _bearer(m: re.Match[str]) -> str:
    v = m["v"]
    # "Basic configuration" is a word; a credential has a digit, a symbol or mixed case
    if re.search(r"[\d._~+/=-]", v) or re.search(r"[A-Z]", v[1:]):
        return m["label"] + MARK
    return m[0]


#: rules over the whole text (a key block spans lines)
_TEXT_RULES: list[Rule] = [
    (_KEY_BLOCK, _key_block),
    (_URL_CREDENTIALS, _url_credentials),
    (_TOKENS, _token),
]
#: rules within a line, tried only on a line holding one of :data:`_LINE_HINTS`: a 1 MiB
#: diff of data is mostly lines without any, and skipping them makes it ~10 times faster
_LINE_RULES: list[Rule] = [
    (_HEADER, _labelled(False)),
    (_SUBSCRIPT, _labelled(True)),
    (_XML, _labelled(True)),
    (_ASSIGN, _labelled(True)),
    (_FLAG_SPACE, _labelled(True)),
    *((c, _labelled(False)) for c in _COMMANDS),
    (_CURL_USER, _labelled(False)),
    (_BEARER, _bearer),
]
#: what every match of a line rule holds, lower-cased (the name keywords of :data:`_NAME`,
#: the headers, the commands)
_LINE_HINTS = ("pass", "pwd", "pw", "secret", "token", "key", "cred", "auth", "sig",
               "cookie", "bearer", "basic", "mysql", "mariadb", "sshpass", "redis-cli",
               "curl", "http")


#: finds the lines worth the line rules in one pass over the lower-cased text
_HINT = re.compile("|".join(re.escape(h) for h in _LINE_HINTS))


def redact(text: str) -> str:
    """*text* with the secret part of every credential replaced by ``***`` (labels kept).
    Idempotent: redacting twice gives what redacting once gave."""
    for pattern, replace in _TEXT_RULES:
        if pattern.search(text):
            text = pattern.sub(replace, text)
    low = text.lower()  # lower() keeps every "\n", so its lines are text's lines
    hinted: list[int] = []  # line numbers holding a hint, ascending
    line_no, counted = 0, 0
    for m in _HINT.finditer(low):
        line_no += low.count("\n", counted, m.start())
        counted = m.start()
        if not hinted or hinted[-1] != line_no:
            hinted.append(line_no)
    if not hinted:
        return text
    lines = text.split("\n")
    for i in hinted:
        line = lines[i]
        for pattern, replace in _LINE_RULES:
            line = pattern.sub(replace, line)
        lines[i] = line
    return "\n".join(lines)


def redact_url(url: str) -> str:
    """*url* fit for a message, a log line or ``Catalogue.url``: its credentials
    (``user:password@``, ``token@``) and secret query values replaced by ``***``."""
    return redact(url)


_FLAG_ALONE = re.compile(r"--?[A-Za-z][\w.-]*")
#: ``-p`` of mysql takes its value only attached (``-p X`` asks and names database X)
_ARGV_FLAGS: Sequence[tuple[re.Pattern[str], str, bool]] = (
    (re.compile(r"(?:mysql\w*|mariadb[\w-]*)"), "-p", False),
    (re.compile(r"sshpass"), "-p", True),
    (re.compile(r"redis-cli"), "-a", True),
)
_ARGV_USER = re.compile(r"(?:curl|https?)")
_ARGV_USER_FLAGS = ("-u", "--user", "-U", "--proxy-user", "-a")


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with secrets redacted: every element through :func:`redact`, and
    the element after a secret flag (``--token X``, ``--db-pass X``; not when it is a
    ``--flag`` itself) replaced whole; ``mysql -pX``, ``sshpass -p X``, ``redis-cli -a
    X`` and ``curl -u user:X`` by what the command makes of them."""
    names = {os.path.basename(a) for a in argv}
    short: dict[str, bool] = {}
    for cmd, flag, spaced in _ARGV_FLAGS:
        if any(cmd.fullmatch(n) for n in names):
            short[flag] = short.get(flag, False) or spaced
    user_flags = any(_ARGV_USER.fullmatch(n) for n in names)
    out: list[str] = []
    pending: str | None = None  # "all": hide the whole element, "password": after user:
    for arg in argv:
        if pending is not None and not arg.startswith("--"):
            if pending == "all":
                out.append(arg if arg in _SAYS_NOTHING else MARK)
            else:
                user, colon, _ = arg.partition(":")
                out.append(user + colon + MARK if colon else arg)
            pending = None
            continue
        pending = None
        if _FLAG_ALONE.fullmatch(arg) and secret_name(arg):
            pending = "all"
            out.append(arg)
            continue
        if arg in short and short[arg]:
            pending = "all"
            out.append(arg)
            continue
        if user_flags and arg in _ARGV_USER_FLAGS:
            pending = "password"
            out.append(arg)
            continue
        attached = next((f for f in short if arg.startswith(f) and len(arg) > len(f)), None)
        if attached is not None:
            out.append(attached + MARK)
            continue
        if user_flags and arg.startswith(("-u", "-U")) and ":" in arg:
            out.append(arg.split(":", 1)[0] + ":" + MARK)
            continue
        out.append(redact(arg))
    return out
