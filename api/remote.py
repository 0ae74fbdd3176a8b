"""A qledger server seen from the command line: the HTTP client of `submit --url` and
`checkpoint --url` (PROTOCOL.md §5).

Problem answers come back as the ledger's own errors, so the CLI maps them where it maps
everything else: a rejected envelope is `Rejected` (with its position), a consistency
proof the server cannot give is a `VerificationError`; anything else that goes wrong
between here and the server is a `ServerError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from ledger.errors import Rejected, Rejection, VerificationError
from ledger.log_reads import Receipt

MAX_BODY = 1 << 20
"""The largest request body a qledger server accepts (1 MiB)."""

_REJECTIONS = {r.value for r in Rejection}


class ServerError(Exception):
    """The server could not be reached, or answered what the protocol does not allow."""


# A long submission through a server that limits writes waits as it is told, within bounds.
MAX_WAITS = 100
MAX_WAIT_SECONDS = 60


class Server:
    """One qledger server at `url` (scheme, host, port and any path prefix)."""

    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServerError(f"{url!r} is not an http:// or https:// URL")
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0),
                                    headers={"User-Agent": "qledger-cli"})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # ---- the routes ----------------------------------------------------------------------

    def append(self, envelopes: Sequence[str]) -> list[Receipt]:
        """POST /v1/entries/batch with envelopes given as JSON texts: all recorded or none.
        Raises Rejected (with the position of the bad envelope) when the server refuses."""
        body = ("[" + ",".join(envelopes) + "]").encode("utf-8")
        for _ in range(MAX_WAITS):
            response = self._request("POST", "/v1/entries/batch", content=body,
                                     headers={"Content-Type": "application/json"})
            # Over the server's write rate (429): nothing was recorded; wait as told.
            retry = response.headers.get("Retry-After", "")
            if response.status_code != 429 or not retry.isdigit():
                break
            time.sleep(min(int(retry), MAX_WAIT_SECONDS))
        if response.status_code not in (200, 201):
            raise self._error(response)
        try:
            return [Receipt(r["index"], r["recorded_at"], bytes.fromhex(r["leaf_hash"]),
                            bool(r.get("duplicate", False))) for r in response.json()]
        except (ValueError, KeyError, TypeError):
            raise ServerError(f"{self.url} answered the batch with something other than "
                              "a list of receipts") from None

    def log_key(self) -> str:
        return self._text("/v1/log-key").strip()

    def checkpoint(self) -> str:
        return self._text("/v1/checkpoint")

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """GET /v1/proof/consistency. A 4xx answer is a VerificationError: a log that signed
        both sizes must be able to prove one extends the other."""
        response = self._request("GET", "/v1/proof/consistency",
                                 params={"first": first, "second": second})
        if 400 <= response.status_code < 500:
            raise VerificationError(
                f"the server cannot prove that its tree of {first} entries is a prefix of its "
                f"tree of {second}: {_problem_detail(response)}")
        if response.status_code != 200:
            raise self._error(response)
        try:
            return [bytes.fromhex(h) for h in response.json()["hashes"]]
        except (ValueError, KeyError, TypeError):
            raise ServerError(f"{self.url} answered a consistency proof that is not "
                              "a list of hex hashes") from None

    # ---- HTTP ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, self.url + path, **kwargs)
        except httpx.HTTPError as e:
            reason = str(e) or type(e).__name__
            raise ServerError(f"cannot reach {self.url}: {reason}") from None

    def _text(self, path: str) -> str:
        response = self._request("GET", path)
        if response.status_code != 200:
            raise self._error(response)
        return response.text

    def _error(self, response: httpx.Response) -> Exception:
        """The ledger's own error for a rejection, else a ServerError naming the answer."""
        problem = _problem(response)
        kind = str(problem.get("type", "")).rsplit("/", 1)[-1]
        if kind in _REJECTIONS and 400 <= response.status_code < 500:
            position = problem.get("position")
            position = position if isinstance(position, int) else None
            detail = str(problem.get("detail", ""))
            for item in problem.get("errors") or []:
                if isinstance(item, dict) and item.get("position") == position:
                    detail = str(item.get("detail", detail))  # without the "envelope N: " prefix
                    break
            return Rejected(Rejection(kind), detail, position=position)
        return ServerError(f"{self.url} answered {response.status_code} "
                           f"{response.reason_phrase}: {_problem_detail(response)}")


def _problem(response: httpx.Response) -> dict[str, Any]:
    if "json" not in response.headers.get("content-type", ""):
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _problem_detail(response: httpx.Response) -> str:
    problem = _problem(response)
    if problem.get("detail"):
        return str(problem["detail"])
    text = response.text.strip().splitlines()
    return text[0][:200] if text else response.reason_phrase


def dumps(envelope: Any) -> str:
    """An envelope as the JSON text sent to the server (ASCII, so its length is its size)."""
    return json.dumps(envelope, separators=(",", ":"))
