"""The RIPE Atlas API, through ripe.atlas.cousteau, on a leash.

cousteau sends requests without a timeout and reads answers whole; here each
call gets a per-request timeout (--timeout), the whole command a deadline
(--deadline: every call runs in a daemon thread that is abandoned when the
deadline passes), and every answer a size cap.  Failures become AtlasError,
one line for a person, with the API key removed from anything the API said
back: the key is never printed, logged or stored.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests

from netprobe.errors import NetprobeError
from netprobe.text import printable

MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # one answer (a measurement's results); more is refused
MAX_DETAIL = 200
PROBE_FIELDS = "id,asn_v4,asn_v6,country_code"
PROBE_BATCH = 200  # probe ids per metadata request
RUNNING_STATUSES = {"specified", "scheduled", "ongoing"}
_SERVER = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


class AtlasError(NetprobeError):
    """A failed API call; `fixable` says whether the user can fix it (exit 2) or not (exit 1)."""

    def __init__(self, message: str, fixable: bool = True):
        super().__init__(message)
        self.message = message
        self.fixable = fixable
        self.exit_code = 2 if fixable else 1  # 1: ExitCode.SERVICE_FAILED


class _TooLargeRequest(requests.exceptions.RequestException):
    """Raised in requests' response hook: cousteau reports a requests exception as a failed call."""


def check_server(server: str) -> str:
    """The API host as cousteau wants it: HOST or HOST:PORT (https is implied)."""
    server = server.strip()
    if server.startswith("https://"):
        server = server[len("https://"):].rstrip("/")
    if not _SERVER.match(server):
        raise AtlasError(f"--api-server: not a host name or HOST:PORT: {server[:80]!r}")
    return server


@dataclass
class Leash:
    """The bounds of every call: per-request timeout and the command's deadline (monotonic)."""

    timeout: float
    deadline_at: float

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()


class AtlasClient:
    def __init__(self, server: str, key: str | None, leash: Leash):
        self.server = check_server(server)
        self.key = key
        self.leash = leash

    # --- plumbing --------------------------------------------------------------------------

    def scrub(self, text: object, limit: int = MAX_DETAIL) -> str:
        """Text the API (or the network) said, as one short line without the key."""
        text = " ".join(str(text).split())
        if self.key:
            text = text.replace(self.key, "<key>")
        return printable(text, limit)

    def _prepare(self, request) -> dict[str, Any]:
        """Timeout, a size cap and the status code, on a cousteau request before it is sent."""
        seen: dict[str, Any] = {}
        timeout = max(0.1, min(self.leash.timeout, self.leash.remaining()))

        def capped(response, *args, **kwargs):
            seen["status"] = response.status_code
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
                raise _TooLargeRequest(f"answer of {length} bytes")
            body = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            if len(body) > MAX_RESPONSE_BYTES:
                raise _TooLargeRequest("answer larger than the cap")
            response._content = body
            response._content_consumed = True
            return response

        request.http_method_args.update(timeout=(timeout, timeout), stream=True, hooks={"response": [capped]})
        return seen

    def _call(self, what: str, action: Callable[[], tuple[bool, Any]], seen: dict) -> Any:
        """Run one cousteau call under the deadline; its parsed answer, or AtlasError."""
        remaining = self.leash.remaining()
        if remaining <= 0:
            raise AtlasError(f"the --deadline passed before {what}", fixable=False)
        box: dict[str, Any] = {}

        def work():
            try:
                box["result"] = action()
            except BaseException as exc:  # carried to the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=work, name="netprobe-atlas", daemon=True)
        thread.start()
        thread.join(remaining)
        if thread.is_alive():
            raise AtlasError(f"the RIPE Atlas API at {self.server} did not finish {what} before the --deadline",
                             fixable=False)
        if "error" in box:
            raise AtlasError(f"{what} failed: {self.scrub(box['error'])}", fixable=False)
        ok, answer = box["result"]
        if ok:
            return answer
        raise self._failure(what, seen.get("status"), answer)

    def _failure(self, what: str, status: int | None, answer: Any) -> AtlasError:
        """A one-line, key-free message for a failed call, and whether the user can fix it."""
        if isinstance(answer, tuple):  # cousteau hands back a requests exception's args
            text = self.scrub(" ".join(str(a) for a in answer))
            if "answer larger" in text or "answer of " in text:
                cap = (f"{MAX_RESPONSE_BYTES // 2**20} MiB" if MAX_RESPONSE_BYTES >= 2**20
                       else f"{MAX_RESPONSE_BYTES} bytes")
                return AtlasError(f"the RIPE Atlas API at {self.server} sent more than {cap} for {what}; refused",
                                  fixable=False)
            if "timed out" in text.lower() or "timeout" in text.lower():
                return AtlasError(f"the RIPE Atlas API at {self.server} did not answer {what} within "
                                  f"{self.leash.timeout:g} s (--timeout)", fixable=False)
            return AtlasError(f"cannot reach the RIPE Atlas API at {self.server} for {what}: {text}", fixable=False)
        detail = ""
        if isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer.get("error"), dict) else answer
            parts = [str(error.get("detail", "") or error.get("title", ""))]
            for item in (error.get("errors") or [])[:3]:
                if isinstance(item, dict):
                    pointer = (item.get("source") or {}).get("pointer", "") if isinstance(item.get("source"), dict) else ""
                    parts.append(f"{pointer} {item.get('detail', '')}".strip())
            detail = self.scrub("; ".join(p for p in parts if p))
            if status is None and isinstance(error.get("status"), int):
                status = error["status"]
        elif answer:
            detail = self.scrub(answer, 80)
        said = f" (HTTP {status}: {detail})" if detail else f" (HTTP {status})"
        lowered = detail.lower()
        if status in (401, 403):
            return AtlasError(f"RIPE Atlas refused the API key for {what}{said}; check RIPE_ATLAS_KEY or "
                              "--key-file, and that the key may create measurements")
        if status == 402 or "credit" in lowered:
            return AtlasError(f"not enough RIPE Atlas credits for {what}{said}; `--dry-run` shows the cost, "
                              "fewer --probes or --measure kinds cost less")
        if status == 404:
            return AtlasError(f"RIPE Atlas has no {what}{said}")
        if status == 429:
            return AtlasError(f"RIPE Atlas is rate-limiting requests{said}; try again in a few minutes",
                              fixable=False)
        if status is not None and status >= 500:
            return AtlasError(f"the RIPE Atlas API failed {what}{said}; try again later", fixable=False)
        if "country" in lowered or "/probes/" in lowered or "asn" in lowered or "probe" in lowered:
            return AtlasError(f"RIPE Atlas rejected the probe selection{said}; check --country (two letters, "
                              "ISO 3166), --asn and --probe")
        return AtlasError(f"RIPE Atlas rejected {what}{said}")

    # --- calls -------------------------------------------------------------------------------

    def create(self, definitions: list[dict], sources: list[dict]) -> list[int]:
        """Schedule one-off measurements on the same probes; their ids, in definition order."""
        from ripe.atlas.cousteau import AtlasCreateRequest, AtlasSource, Dns, Sslcert, Traceroute

        kinds = {"dns": Dns, "sslcert": Sslcert, "traceroute": Traceroute}
        measurements = [kinds[d["type"]](**{k: v for k, v in d.items() if k != "type"}) for d in definitions]
        request = AtlasCreateRequest(key=self.key, server=self.server, measurements=measurements,
                                     sources=[AtlasSource(**s) for s in sources], is_oneoff=True,
                                     user_agent="netprobe")
        seen = self._prepare(request)
        answer = self._call("creating the measurements", request.create, seen)
        ids = answer.get("measurements") if isinstance(answer, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise AtlasError("the RIPE Atlas API accepted the measurements but named no measurement ids",
                             fixable=False)
        return ids

    def _read(self, what: str, make_request, call=None) -> Any:
        """A read: without the key first (public data needs none, and a key made only to create
        measurements may not be allowed to read), then once with it if the API refuses."""
        try:
            request = make_request(None)
            seen = self._prepare(request)
            return self._call(what, lambda: (call or (lambda r: r.get()))(request), seen)
        except AtlasError as exc:
            if not self._refused(exc):
                raise
            if not self.key:
                if "HTTP 404" in exc.message:
                    raise
                raise AtlasError(f"RIPE Atlas shows {what} only with an API key: set RIPE_ATLAS_KEY or "
                                 "--key-file") from None
        request = make_request(self.key)
        seen = self._prepare(request)
        return self._call(what, lambda: (call or (lambda r: r.get()))(request), seen)

    @staticmethod
    def _refused(exc: AtlasError) -> bool:
        return any(f"HTTP {code}" in exc.message for code in (401, 403, 404))

    def measurement(self, msm_id: int) -> dict[str, Any]:
        """A measurement's metadata (type, target, status, ...)."""
        from ripe.atlas.cousteau import AtlasRequest

        answer = self._read(f"measurement {msm_id}", lambda key: AtlasRequest(
            url_path=f"/api/v2/measurements/{int(msm_id)}/", key=key, server=self.server, user_agent="netprobe"))
        if not isinstance(answer, dict):
            raise AtlasError(f"the RIPE Atlas API sent no measurement object for {msm_id}", fixable=False)
        return answer

    def statuses(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """The status of many measurements, a few requests for all of them."""
        from ripe.atlas.cousteau import AtlasRequest

        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), PROBE_BATCH):
            batch = ids[start:start + PROBE_BATCH]
            answer = self._read("measurement statuses", lambda key: AtlasRequest(
                url_path="/api/v2/measurements/", key=key, server=self.server, user_agent="netprobe"),
                lambda r, b=batch: r.get(id__in=",".join(map(str, b)), fields="id,status", page_size=len(b)))
            for item in (answer.get("results") or []) if isinstance(answer, dict) else []:
                if isinstance(item, dict) and isinstance(item.get("id"), int):
                    found[item["id"]] = item
        return found

    def results(self, msm_id: int) -> list[Any]:
        """Every result of a measurement so far."""
        from ripe.atlas.cousteau import AtlasResultsRequest

        answer = self._read(f"results of measurement {msm_id}", lambda key: AtlasResultsRequest(
            msm_id=int(msm_id), key=key, server=self.server, user_agent="netprobe"))
        if not isinstance(answer, list):
            raise AtlasError(f"the RIPE Atlas API sent no result list for measurement {msm_id}", fixable=False)
        return answer

    def probes(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """ASN and country of probes, as the API states them."""
        from ripe.atlas.cousteau import AtlasRequest

        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), PROBE_BATCH):
            batch = ids[start:start + PROBE_BATCH]
            answer = self._read("probe metadata", lambda key: AtlasRequest(
                url_path="/api/v2/probes/", key=key, server=self.server, user_agent="netprobe"),
                lambda r, b=batch: r.get(id__in=",".join(map(str, b)), fields=PROBE_FIELDS, page_size=len(b)))
            for probe in (answer.get("results") or []) if isinstance(answer, dict) else []:
                if isinstance(probe, dict) and isinstance(probe.get("id"), int):
                    found[probe["id"]] = probe
        return found


def is_running(meta: dict[str, Any]) -> bool:
    status = meta.get("status")
    name = status.get("name") if isinstance(status, dict) else status
    return str(name).strip().lower() in RUNNING_STATUSES


def status_name(meta: dict[str, Any]) -> str:
    status = meta.get("status")
    name = status.get("name") if isinstance(status, dict) else status
    return str(name or "unknown")[:40]
