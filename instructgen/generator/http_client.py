"""One JSON-over-HTTP client for every HTTP backend: retries, a rate limit, redaction, cancelling.

`JSONClient.post(path, body, call)` sends one request to BASE_URL + path (+ the base URL's query) and returns the
parsed JSON. Timeouts, connection errors, 429 and 5xx are retried with exponential backoff and jitter (a
Retry-After header is honoured, up to `max_backoff_s`); other 4xx fail at once with the server's message. An
optional `rps` spaces request starts (retries included) at least 1/rps seconds apart across all threads. The API
key goes out only as a Bearer header and is redacted from every message this module makes.

`run_concurrently(items, fn, max_concurrency)` is the ordered, cancellable fan-out the backends share: at most
`max_concurrency` daemon workers, results in the caller's order, the first failure cancels the rest (queued
items are never sent, in-flight sockets are shut down so the server sees the client go), and so does any
exception in the caller's thread (Ctrl-C). `on_result(i, result)` runs in the caller's thread as results land.

`EndpointPool(clients, balance)` spreads requests over several base URLs serving one model (round-robin or
least-loaded) and moves a request whose endpoint is down to another one (see its docstring).

Standard library only: http.client with pooled keep-alive connections; no proxies. A little over 400 lines: the
retries, the fan-out and the failover between endpoints are one piece (each decides what the others see).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import queue
import random
import socket
import ssl
import threading
import time
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import urlsplit

from ..secrets import redact, redact_url

log = logging.getLogger(__name__)
T, R = TypeVar("T"), TypeVar("R")


class TeacherRequestError(RuntimeError):
    """A request failed for good: a 4xx other than 429, a bad response, or every attempt used up."""


class EndpointDown(TeacherRequestError):
    """Every attempt at one endpoint used up on what another endpoint may not have (timeouts, refused or reset
    connections, 429, 5xx): an EndpointPool sends the request elsewhere; with one endpoint it is the error."""


class Call:
    """One fan-out: its cancel flag and the connections it has in flight, cut when it is cancelled."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.conns: set[http.client.HTTPConnection] = set()

    def cancel(self) -> None:
        # The flag first, then the sockets: a worker checks the flag once its socket exists, so none is missed.
        self.cancelled.set()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            sock = c.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv; close() alone does not
                except OSError:
                    pass


class RateLimit:
    """Request starts at least 1/rps seconds apart, shared by every thread; None or 0 means no limit."""

    def __init__(self, rps: float | None) -> None:
        if rps is not None and rps < 0:
            raise ValueError("rps must be >= 0")
        self.interval = 1.0 / rps if rps else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, cancelled: threading.Event) -> bool:
        """Block until this request may start; False when the call was cancelled meanwhile."""
        if not self.interval:
            return not cancelled.is_set()
        with self._lock:  # reserve a slot, then wait outside the lock
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        return not cancelled.wait(max(0.0, slot - now))


def run_concurrently(items: Sequence[T], fn: Callable[[T, Call], R], max_concurrency: int,
                     on_result: Callable[[int, R], None] | None = None, name: str = "http") -> list[R]:
    """`[fn(item, call) for item in items]` on up to `max_concurrency` threads, in order, cancellable (see the
    module docstring). The first exception of any `fn` is re-raised once the rest are cancelled."""
    if not items:
        return []
    call = Call()
    out: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    todo = list(range(len(items)))[::-1]  # popped from the end: sent in the caller's order
    landed: queue.Queue = queue.Queue()  # (i, result) for the caller's thread; None: a worker failed

    def work() -> None:
        while not call.cancelled.is_set():
            with call.lock:
                if not todo:
                    return
                i = todo.pop()
            try:
                r = fn(items[i], call)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                with call.lock:
                    errors.append(e)  # the first one is the cause; later ones are "cancelled"
                call.cancel()
                landed.put(None)
                return
            landed.put((i, r))

    try:
        # Daemon threads: a process that is exiting (Ctrl-C) never waits for a request to end.
        for k in range(min(max(1, int(max_concurrency)), len(items))):
            threading.Thread(target=work, name=f"{name}-{k}", daemon=True).start()
        left = len(items)
        while left and not errors:
            try:
                got = landed.get(timeout=0.1)  # short waits: Ctrl-C is seen even when a worker took SIGINT
            except queue.Empty:
                continue
            if got is None:
                break
            i, r = got
            out[i] = r
            left -= 1
            if on_result is not None:
                on_result(i, r)
    except BaseException:
        call.cancel()
        raise
    if errors:
        raise errors[0]
    return out


class JSONClient:
    """POST JSON to one base URL with retries (see the module docstring). `stats` counts requests and retries."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 300.0, max_attempts: int = 6,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0, rps: float | None = None,
                 retry_refused: bool = True):
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._query = f"?{parts.query}" if parts.query else ""  # e.g. ?api-version=...; never a secret
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.base_url = f"{self._origin}{self._prefix}{self._query}"
        self.timeout_s, self.max_attempts = float(timeout_s), max(1, int(max_attempts))
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.rate = RateLimit(rps)
        # False in a pool of several endpoints: nothing listens there, so another endpoint gets the request now
        self.retry_refused = retry_refused
        self._api_key = api_key or None
        self._pool: list[http.client.HTTPConnection] = []
        self._pool_lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0}
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"JSONClient({self.base_url!r})"

    def redact(self, text: str) -> str:
        """`text` with the API key (and pieces of it) and URL credentials masked."""
        return redact(text, self._api_key)

    def url(self, path: str) -> str:
        """The endpoint as messages show it (redacted, though a base URL with a secret is refused anyway)."""
        return redact_url(f"{self._origin}{self._prefix}{path}{self._query}")

    def count(self, **kw: int) -> None:
        with self._stats_lock:
            for k, v in kw.items():
                self.stats[k] = self.stats.get(k, 0) + v

    def close(self) -> None:
        """Close the pooled keep-alive connections (idempotent; the client still works afterwards)."""
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for c in pool:
            c.close()

    def post(self, path: str, body: dict, call: Call, attempts: int | None = None,
             give_up: Callable[[], bool] | None = None) -> Any:
        """POST `body` as JSON to `path`; the parsed JSON reply, or TeacherRequestError naming the URL (EndpointDown
        when the attempts ran out). `attempts` overrides max_attempts for this request; `give_up()`, asked before
        each retry, ends the retries early (an EndpointPool: another request found the endpoint down)."""
        url = self.url(path)
        attempts = max(1, int(attempts)) if attempts else self.max_attempts
        payload = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        cancelled = f"{url}: cancelled (another request failed, or the run was interrupted)"
        last = "no attempt made"
        for attempt in range(1, attempts + 1):
            if not self.rate.wait(call.cancelled):
                raise TeacherRequestError(cancelled)
            retry_after = None
            self.count(requests=1)
            try:
                status, resp_headers, raw = self._send(self._prefix + path + self._query, payload, headers, call)
            except (OSError, http.client.HTTPException) as e:  # timeouts, refused/reset connections, bad HTTP
                if call.cancelled.is_set():  # our own shutdown of the socket, not the server's fault
                    raise TeacherRequestError(cancelled) from None
                last = self.redact(f"{type(e).__name__}: {e}")
                if isinstance(e, ConnectionRefusedError) and not self.retry_refused:
                    raise EndpointDown(f"{url}: {last}") from None
            else:
                if 200 <= status < 300:
                    try:
                        return json.loads(raw)
                    except ValueError:
                        raise TeacherRequestError(f"{url}: HTTP {status} but the body is not JSON: "
                                                  f"{self.redact(raw[:200].decode('utf-8', 'replace'))}") from None
                message = self.redact(server_message(raw))
                if status != 429 and status < 500:
                    raise TeacherRequestError(f"{url}: HTTP {status}: {message}")
                last = f"HTTP {status}: {message}"
                retry_after = retry_after_s(resp_headers.get("Retry-After"))
            if attempt == attempts:
                break
            if give_up is not None and give_up():
                raise EndpointDown(f"{url}: stopped retrying, the endpoint is down; last: {last}")
            delay = self.delay(attempt, retry_after)
            self.count(retries=1)
            log.warning("%s: %s; retry %d/%d in %.1fs", url, last, attempt, attempts - 1, delay)
            if call.cancelled.wait(delay):  # a retry wait ends the moment the call is cancelled
                raise TeacherRequestError(cancelled)
        raise EndpointDown(f"{url}: gave up after {attempts} attempts; last: {last}")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), or the server's Retry-After (capped)."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        d = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return d / 2 + random.uniform(0, d / 2)

    def _send(self, path: str, payload: bytes, headers: dict, call: Call) -> tuple[int, Any, bytes]:
        conn, reused = self._connection()
        try:
            return self._exchange(conn, path, payload, headers, call)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not reused or call.cancelled.is_set():
                raise
            # A pooled keep-alive connection the server had closed: redo once on a fresh one, not counted.
            return self._exchange(self._connection(fresh=True)[0], path, payload, headers, call)

    def _exchange(self, conn: http.client.HTTPConnection, path: str, payload: bytes, headers: dict,
                  call: Call) -> tuple[int, Any, bytes]:
        """One request and its whole response on `conn`, which the call can cut while it is in flight."""
        with call.lock:
            call.conns.add(conn)
        try:
            if conn.sock is None:
                conn.connect()  # apart from the request, so a call cancelled meanwhile sends nothing
            if call.cancelled.is_set():
                raise ConnectionAbortedError("cancelled")
            conn.request("POST", path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except BaseException:
            conn.close()
            raise
        finally:
            with call.lock:
                call.conns.discard(conn)
        if resp.will_close or call.cancelled.is_set():  # a socket the call may have shut down is not reused
            conn.close()
        else:
            with self._pool_lock:
                self._pool.append(conn)
        return resp.status, resp.headers, raw

    def _connection(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        if not fresh:
            with self._pool_lock:
                if self._pool:
                    return self._pool.pop(), True
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s,
                                               context=ssl.create_default_context()), False
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s), False


BALANCE = ("round_robin", "least_loaded")  # EndpointPool's ways to pick an endpoint (teacher_options `balance`)


class EndpointPool:
    """Several JSONClients serving one model: `post` sends each request to one of them and returns (reply, the
    client that answered).

    round_robin: strict rotation over the endpoints that are up; least_loaded: the one with the fewest requests in
    flight, ties to the first listed. An endpoint that gives up on a request (EndpointDown: a refused connection at
    once, timeouts, 429 or 5xx after its retries) is marked down for `cooldown_s`, said once on the log (stderr),
    and the request goes to another endpoint; requests still retrying there stop retrying and move too. After its
    cooldown a down endpoint gets requests again, one attempt each until one succeeds; while every endpoint is
    down, a request tries each one once (one attempt) before it fails with one line naming them all. Other errors
    (4xx, a bad response, a cancelled call) are the request's, not the endpoint's: raised at once. With one
    client this is exactly that client."""

    def __init__(self, clients: Sequence[JSONClient], balance: str = "round_robin", cooldown_s: float = 30.0):
        if balance not in BALANCE:
            raise ValueError(f"balance must be one of {', '.join(BALANCE)}")
        self.clients, self.balance, self.cooldown_s = list(clients), balance, float(cooldown_s)
        n = len(self.clients)
        self.sent = [0] * n  # requests given to each endpoint (one moved to another counts on both)
        self.in_flight = [0] * n
        self.down_until = [0.0] * n  # monotonic time its cooldown ends
        self.failing = [False] * n  # failed since its last success: one attempt per request
        self._said: set[int] = set()
        self._next = 0
        self._lock = threading.Lock()
        if n > 1:
            for c in self.clients:
                c.retry_refused = False

    def post(self, path: str, body: dict, call: Call) -> tuple[Any, JSONClient]:
        if len(self.clients) == 1:
            return self.clients[0].post(path, body, call), self.clients[0]
        tried: set[int] = set()
        errors: list[str] = []
        while True:
            i, probe = self._pick(tried)
            if i is None:
                raise TeacherRequestError(f"all {len(self.clients)} endpoints failed: " + " | ".join(errors))
            client = self.clients[i]
            try:
                data = client.post(path, body, call, attempts=1 if probe else None,
                                   give_up=lambda i=i: self.down_until[i] > time.monotonic())
            except EndpointDown as e:
                self._mark_down(i, str(e))
                tried.add(i)
                errors.append(str(e))
                continue
            finally:
                with self._lock:
                    self.in_flight[i] -= 1
            if self.failing[i]:  # it answered: up again
                with self._lock:
                    self.failing[i], self.down_until[i] = False, 0.0
                log.info("endpoint %s answers again", client.base_url)
            return data, client

    def _pick(self, tried: set[int]) -> tuple[int | None, bool]:
        """(endpoint index, whether it is failing) for a request that already failed on `tried`; (None, False)
        when it has been everywhere."""
        n, now = len(self.clients), time.monotonic()
        with self._lock:
            left = [i for i in range(n) if i not in tried]
            if not left:
                return None, False
            pool = [i for i in left if self.down_until[i] <= now] or left  # every one down: try them anyway
            if self.balance == "least_loaded":
                i = min(pool, key=lambda j: (self.in_flight[j], j))
            else:
                i = next(j % n for j in range(self._next, self._next + n) if j % n in pool)
                self._next = i + 1
            self.in_flight[i] += 1
            self.sent[i] += 1
            return i, self.failing[i]

    def _mark_down(self, i: int, why: str) -> None:
        with self._lock:
            self.down_until[i] = time.monotonic() + self.cooldown_s
            self.failing[i] = True
            first = i not in self._said
            self._said.add(i)
        if first:  # once per endpoint: a dead one is not announced again at every retry after its cooldown
            log.warning("endpoint %s is down (%s); its requests go to the other endpoints, and it is tried again "
                        "every %gs", self.clients[i].base_url, why, self.cooldown_s)


def server_message(raw: bytes) -> str:
    """The server's error message: OpenAI's {"error": {"message"}} when present, else the body's start."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str) and msg:
            return msg[:500]
        if msg is not None:
            return json.dumps(msg)[:500]
    except ValueError:
        pass
    return " ".join(text.split())[:500] or "(empty body)"


def retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None
