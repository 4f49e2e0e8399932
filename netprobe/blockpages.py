"""Known blockpages: is this HTTP answer a page a censor or a filter is known to serve?

A blockpage often comes with an ordinary status (200, 302, 403), so neither the status nor "the page
is not the service's" tells it apart from a CDN error or a changed site. What does is a page someone
has already seen and documented. The fingerprints are OONI's public list (`data/blockpages.csv`; its
origin and licence are in `data/blockpages.SOURCE.md`), matched the way that list defines them.

Pure: no I/O beyond reading the packaged list once, on first use.
"""

from __future__ import annotations

import csv
import functools
import io
import ipaddress
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

DATA_FILE = "data/blockpages.csv"
DNS_FILE = "data/dns_fingerprints.csv"  # addresses a blocking resolver answers (dns_fingerprints.SOURCE.md)
BODY_LIMIT = 2048  # bytes of the body looked at: what the HTTP probes keep as evidence

# A national, ISP or product page names who blocks; a vague blocking word only says "blocked".
# Fingerprints are tried in this order (then by OONI's confidence, highest first, then file order),
# so the first match is the most specific one. An unknown scope comes last.
SCOPE_ORDER = {"nat": 0, "isp": 1, "prod": 2, "inst": 3, "injb": 4, "prov": 5, "vbw": 6}
# `fp` rows are OONI's known *false positives*: never a blockpage, skipped even if a refreshed file
# still holds them.
NOT_A_BLOCKPAGE = "fp"
PATTERN_TYPES = ("full", "prefix", "contains", "regexp")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    name: str
    scope: str
    location: str  # "body" or "header.<lower-case name>"
    pattern_type: str
    pattern: str
    confidence: int
    countries: tuple[str, ...]
    regexp: re.Pattern[str] | None = None  # compiled once, at load, for pattern_type "regexp"

    @property
    def header(self) -> str | None:
        return self.location[len("header."):] if self.location != "body" else None

    def matches(self, text: str) -> bool:
        if self.regexp is not None:
            return self.regexp.search(text) is not None
        if self.pattern_type == "contains":
            return self.pattern in text
        if self.pattern_type == "prefix":
            return text.startswith(self.pattern)
        return text == self.pattern  # full

    def evidence(self, location: str) -> dict[str, Any]:
        return {"name": self.name, "scope": self.scope, "countries": list(self.countries),
                "location": location, "confidence": self.confidence}


class Loaded(NamedTuple):
    fingerprints: tuple[Fingerprint, ...]  # in matching order
    skipped: tuple[tuple[str, str], ...]  # (name, why) of rows that could not be used


def _parse(row: dict[str, str]) -> Fingerprint | str:
    """A row as a Fingerprint, or why it cannot be one (a bad row must not break the probe)."""
    pattern, kind = row.get("pattern") or "", row.get("pattern_type") or ""
    location = (row.get("location_found") or "").strip().lower()
    if not pattern:
        return "empty pattern"
    if kind not in PATTERN_TYPES:
        return f"unknown pattern_type {kind!r}"
    if location != "body" and not (location.startswith("header.") and len(location) > len("header.")):
        return f"not an HTTP location {location!r}"
    regexp = None
    if kind == "regexp":
        try:
            regexp = re.compile(pattern, re.DOTALL)  # DOTALL: a blockpage's text spans lines
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            return f"regexp does not compile: {exc}"
    confidence = (row.get("confidence_no_fp") or "").strip()
    countries = tuple(cc.strip() for cc in (row.get("expected_countries") or "").split(",") if cc.strip())
    return Fingerprint(name=row.get("name") or "", scope=row.get("scope") or "", location=location,
                       pattern_type=kind, pattern=pattern,
                       confidence=int(confidence) if confidence.isdigit() else 0, countries=countries,
                       regexp=regexp)


def parse_rows(text: str) -> Loaded:
    """Fingerprints from the CSV text, in matching order; unusable rows are skipped, with why."""
    usable: list[Fingerprint] = []
    skipped: list[tuple[str, str]] = []
    # newline="": keep the CR LF inside quoted patterns (some blockpages are matched on "\r\n").
    for row in csv.DictReader(io.StringIO(text, newline="")):
        if row.get("scope") == NOT_A_BLOCKPAGE:
            skipped.append((row.get("name") or "", "a known false positive, not a blockpage"))
            continue
        parsed = _parse(row)
        if isinstance(parsed, str):
            skipped.append((row.get("name") or "", parsed))
        else:
            usable.append(parsed)
    usable.sort(key=lambda fp: (SCOPE_ORDER.get(fp.scope, len(SCOPE_ORDER)), -fp.confidence))
    return Loaded(tuple(usable), tuple(skipped))


@functools.cache
def load() -> Loaded:
    """The packaged list, parsed once: a run matches many answers against the same 1,000+ rows."""
    raw = resources.files("netprobe").joinpath(DATA_FILE).read_bytes()
    return parse_rows(raw.decode("utf-8"))


def _body_texts(body: bytes) -> tuple[str, ...]:
    """The body as text. UTF-8 first; a non-ASCII body also as Latin-1, because some patterns were
    recorded from bodies read that way (`PÃ¡gina`) and legacy single-byte pages read right in it."""
    if not body:
        return ()
    if body.isascii():
        return (body.decode("ascii"),)
    return (body.decode("utf-8", errors="replace"), body.decode("latin-1"))


def match_blockpage(status: int | None, headers: dict[str, str], body_prefix: bytes,
                    limit: int = BODY_LIMIT) -> dict | None:
    """The first known blockpage this answer matches, as evidence, or None.

    `headers`: lower-case header name -> value, whichever headers the caller kept; a fingerprint on
    a header that is absent does not match. `body_prefix`: the first bytes of the body (only the first
    `limit` are looked at; an imported measurement keeps more than a probe here). `status` is accepted
    but does not decide anything: OONI's fingerprints do not depend on it, and a blockpage may come
    with any status.

    Returns {"name", "scope", "countries", "location": "body" | "header.<name>", "confidence"}.
    """
    del status  # see the docstring
    texts = _body_texts(bytes(body_prefix[:limit]))
    values = {str(key).lower(): str(value) for key, value in headers.items()} if headers else {}
    for fingerprint in load().fingerprints:
        header = fingerprint.header
        if header is None:
            if any(fingerprint.matches(text) for text in texts):
                return fingerprint.evidence("body")
        elif header in values and fingerprint.matches(values[header]):
            return fingerprint.evidence(fingerprint.location)
    return None


@functools.cache
def dns_fingerprints() -> dict[str, Fingerprint]:
    """The packaged DNS list, address -> fingerprint: every row is an exact address (`full`)."""

    raw = resources.files("netprobe").joinpath(DNS_FILE).read_bytes().decode("utf-8")
    found: dict[str, Fingerprint] = {}
    for row in csv.DictReader(io.StringIO(raw, newline="")):
        try:
            address = str(ipaddress.ip_address((row.get("pattern") or "").strip()))
        except ValueError:
            continue
        if row.get("scope") in (NOT_A_BLOCKPAGE, "vbw") or row.get("pattern_type") != "full":
            continue
        confidence = (row.get("confidence_no_fp") or "").strip()
        countries = tuple(cc.strip() for cc in (row.get("expected_countries") or "").split(",") if cc.strip())
        found.setdefault(address, Fingerprint(name=row.get("name") or "", scope=row.get("scope") or "",
                                              location="dns", pattern_type="full", pattern=address,
                                              confidence=int(confidence) if confidence.isdigit() else 0,
                                              countries=countries))
    return found


def match_dns_answer(address: str) -> dict | None:
    """The known blockpage address (OONI's DNS list) this DNS answer is, as evidence, or None."""
    fingerprint = dns_fingerprints().get(address)
    return None if fingerprint is None else fingerprint.evidence("dns")
