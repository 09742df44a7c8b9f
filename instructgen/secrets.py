"""Secrets in one place: mask a key in any text we print, and refuse URLs that carry credentials.

A key reaches us from the environment only (`$OPENAI_API_KEY`, `$HF_TOKEN`) and leaves only in a header. These
helpers keep it out of everything else: messages, logs, exceptions, `config.json`, provenance. `redact` masks a
known secret (also pieces of it a server echoes back, e.g. `sk-abc...xyz`) and any URL credentials in free
text; `url_secret_problem` says why a URL must be refused (`user:password@` or a secret in the query) without
repeating the secret; `redact_url` is the form of a URL that is safe to print.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

MASK = "***"
MIN_FRAGMENT = 8  # an echoed piece of a key this long is masked too; shorter runs are ordinary words
# Query parameter names that carry a secret (compared lower-case, with '-' read as '_'); a name containing one
# of the words is refused too, e.g. `x_api_key`, `sas_token`, `client_secret`.
SECRET_PARAMS = frozenset({"key", "sig", "pwd", "pass", "code", "auth", "jwt", "sas"})
SECRET_WORDS = ("key", "token", "secret", "passw", "signature", "credential", "auth", "session", "cookie", "bearer")

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(:\d{1,5})?$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_DOMAIN = re.compile(r"^([A-Za-z0-9-]+\.)+[A-Za-z]{2,}$")  # example.com, api.openai.com (not llama3.1)
URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # where a URL begins inside a longer text
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter name (`api_key`, `access_token`, `sig`, `password`, ...) holds a secret."""
    n = name.strip().lower().replace("-", "_")
    return n in SECRET_PARAMS or any(w in n for w in SECRET_WORDS)


def _split(url: str) -> tuple[str, str, str, str, str]:
    """(scheme://, authority, path, ?query, #fragment) by plain text, so a malformed URL still splits (a
    missing scheme leaves the authority first)."""
    m = _SCHEME.match(url)
    scheme = m.group(0) if m else ""
    rest = url[len(scheme):]
    rest, hash_, fragment = rest.partition("#")
    rest, q, query = rest.partition("?")
    cut = rest.find("/")
    authority, path = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    return scheme, authority, path, q + query, hash_ + fragment


def looks_like_host(text: str) -> bool:
    """`127.0.0.1:9`, `localhost`, `[::1]:8000`, `api.example.com` or `host:8000`: a network location, not a
    model name (model names such as `llama3.1`, `gpt-3.5-turbo` or `org/model:7b` are not hosts)."""
    host, sep, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not sep:
        host, port = text, ""
    if port and not port.isdigit():
        return False
    host = host.lower()
    return bool(host == "localhost" or _IPV4.match(host) or (host.startswith("[") and host.endswith("]"))
                or _DOMAIN.match(host) or (port and _HOSTPORT.match(host)))


def userinfo_in(text: str) -> bool:
    """Whether `text`, a URL perhaps followed by `@MODEL`, holds `user[:password]@` before its host.

    The authority `X@Y` of `http://X@Y/...` is credentials X when another `@` follows (`.../v1@model`), when X
    is no `host[:port]` (`user:SECRET`), or when Y is a network location (`http://admin:4242@127.0.0.1:9/v1`);
    otherwise it is `BASE_URL@MODEL` without a path (`http://127.0.0.1:8000@org/model`)."""
    scheme, authority, path, query, fragment = _split(text)
    if "@" not in authority:
        return False
    first, last = authority.split("@", 1)[0], authority.rsplit("@", 1)[1]
    return ("@" in path + query + fragment or authority.count("@") > 1 or not _HOSTPORT.match(first)
            or looks_like_host(last))


def secret_params_in(url: str) -> list[str]:
    """Names of the query parameters of `url` that hold a secret (`api_key`, `sig`, ...), sorted."""
    query = _split(url)[3]
    return sorted({k for k, _ in parse_qsl(query[1:], keep_blank_values=True) if is_secret_param(k)})


def url_secret_problem(url: str, key_env: str = "OPENAI_API_KEY") -> str | None:
    """Why `url` must not be accepted (credentials in it), in words that do not repeat the secret; None if fine."""
    scheme, authority, path, query, fragment = _split(url)
    if "@" in authority:
        return f"credentials in the URL (user:password@) are not accepted; put the key in ${key_env}"
    names = secret_params_in(url)
    if names:
        return (f"a secret in the URL's query ({', '.join(names)}=...) is not accepted; put the key in "
                f"${key_env}")
    if fragment:
        return "the URL takes no #fragment"
    return None


def redact_url(url: str) -> str:
    """`url` safe to print: `user:password@` -> `***@`, secret query values -> `***`, a fragment -> `#***`."""
    scheme, authority, path, query, fragment = _split(url)
    if "@" in authority:
        authority = MASK + "@" + authority.rsplit("@", 1)[1]
    if query:
        pairs = [p.partition("=") for p in query[1:].split("&")]
        query = "?" + "&".join(k + s + (MASK if s and is_secret_param(k) else v) for k, s, v in pairs)
    return scheme + authority + path + query + ("#" + MASK if fragment else "")


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every given secret masked, also any word sharing 8+ characters with one (a server that
    echoes a key in part, or glued to other text), and URL credentials anywhere in it. None or "" is skipped."""
    for s in secrets:
        if s:
            text = text.replace(s, MASK)
            grams = {s[i:i + MIN_FRAGMENT] for i in range(len(s) - MIN_FRAGMENT + 1)}
            if grams:
                text = _TOKEN.sub(lambda m: MASK if _shares(m.group(0), grams) else m.group(0), text)
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _shares(token: str, grams: set[str]) -> bool:
    return any(token[i:i + MIN_FRAGMENT] in grams for i in range(len(token) - MIN_FRAGMENT + 1))
