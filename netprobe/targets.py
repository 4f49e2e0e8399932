"""Target files: TOML describing where a service lives and what to probe.

The top-level keys (name, networks, controls, domains, endpoints, ranges) are
a contract other tools write to; validation names the file, the key and the
bad value so that a person can fix the file from the message alone.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from netprobe.addresses import (
    AddressError,
    Endpoint,
    IPAddress,
    IPNetwork,
    in_networks,
    parse_endpoint,
    parse_ip,
    parse_network,
    parse_port,
)
from netprobe.bounded_input import read_regular_file
from netprobe.errors import NetprobeError

# A range probed whole may hold at most this many addresses; beyond, `sample`.
MAX_WHOLE_RANGE = 65536
# A target file larger than this is refused unread (the built-in set is ~2 KB):
# `--targets /dev/zero` must be an error, not a process that eats all memory.
MAX_FILE_BYTES = 4 * 1024 * 1024
BUILTIN = "telegram"

_TOP_KEYS = {"name", "description", "networks", "controls", "control_domains", "negative_controls", "domains",
             "endpoints", "ranges", "dns_canary", "datacenters"}
_DOMAIN_KEYS = {"name", "addresses", "note", "group"}
# A control name may also state what its genuine server answers over plain HTTP, and where that was seen.
_CONTROL_DOMAIN_KEYS = _DOMAIN_KEYS | {"http", "source"}
_HTTP_KEYS = {"status", "location", "headers", "body_contains"}
# Headers an HTTP probe records (netprobe/probes/https.py RECORDED_HEADERS, location aside: `location`);
# the body marker must lie within the body prefix it keeps (BODY_PREFIX bytes).
HTTP_EXPECTED_HEADERS = ("server", "content-type", "content-length")
MAX_BODY_MARKER = 256
MAX_SOURCE = 500
# The keys whose absence the built-in set fills (with_default_controls), and names that never
# resolve on the public Internet (RFC 6761 section 6, RFC 6762, RFC 8375, ICANN's .internal).
CONTROL_KEYS = ("controls", "control_domains")
LOCAL_NAME_SUFFIXES = ("test", "localhost", "invalid", "example", "local", "home.arpa", "internal")
_ENDPOINT_KEYS = {"address", "dc", "note", "group"}
# A group names a family of targets in reports (netprobe report folds its members into one row).
MAX_GROUP = 64
_RANGE_KEYS = {"cidr", "ports", "sample", "note"}
_DATACENTER_KEYS = {"dc", "city", "lat", "lon", "source", "note"}
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class TargetFileError(NetprobeError, ValueError):
    """A target file that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class HttpExpectation:
    """What a control name's genuine server answers to netprobe's plain-HTTP `GET /`, and where
    that answer was recorded: a control passes on that answer only (netprobe/vantage.py)."""

    source: str
    status: int | None = None
    location: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (recorded header, text its value contains)
    body_contains: str | None = None

    def evidence(self) -> dict[str, Any]:
        """The expectation as records carry it (classify.http_answer_difference reads it)."""
        out: dict[str, Any] = {"source": self.source}
        if self.status is not None:
            out["status"] = self.status
        if self.location is not None:
            out["location"] = self.location
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.body_contains is not None:
            out["body_contains"] = self.body_contains
        return out


@dataclass(frozen=True)
class Domain:
    name: str
    addresses: tuple[IPAddress, ...] = ()
    group: str | None = None  # a family of names shown as one row (records: evidence.group)
    http: HttpExpectation | None = None  # control names only: the genuine plain-HTTP answer


@dataclass(frozen=True)
class EndpointTarget:
    endpoint: Endpoint
    dc: int | None = None
    group: str | None = None  # a family of endpoints shown as one row (records: evidence.group)


@dataclass(frozen=True)
class Datacenter:
    """Where a data center (the endpoints' `dc`) stands: connect times that no path to
    it could give mean that something nearer answered (netprobe/vantage.py)."""

    dc: int
    city: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Range:
    cidr: IPNetwork
    ports: tuple[int, ...]
    sample: int

    @property
    def size(self) -> int:
        return self.cidr.num_addresses if self.sample == 0 else self.sample


@dataclass(frozen=True)
class TargetSet:
    name: str
    source: str
    networks: tuple[IPNetwork, ...] = ()
    controls: tuple[Endpoint, ...] = ()
    domains: tuple[Domain, ...] = ()
    endpoints: tuple[EndpointTarget, ...] = ()
    ranges: tuple[Range, ...] = ()
    dns_canary: tuple[IPAddress, ...] = field(default=())
    # Non-service names measured like the service's domains at every stage (DNS, TLS, HTTP).
    control_domains: tuple[Domain, ...] = ()
    # Addresses that must not accept a connection; None: the built-in default (netprobe/plan.py).
    negative_controls: tuple[IPAddress, ...] | None = None
    # Published locations of the endpoints' data centers (optional).
    datacenters: tuple[Datacenter, ...] = ()
    # The top-level keys the file wrote (an empty array is a choice; an absent key is not).
    declared: frozenset[str] = frozenset()
    # CONTROL_KEYS filled from the built-in set because the file had none (with_default_controls).
    default_controls: tuple[str, ...] = ()


def normalize_domain(text: object) -> str:
    """ASCII (IDNA) form of a domain name, lower case, without the final dot."""
    # lazy: dns.name 22 ms; a target file without domains never loads dnspython (TCP-only sweep, test_startup)
    import dns.name

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"not a domain name: {text!r}")
    try:
        name = dns.name.from_text(text.strip()).to_text(omit_final_dot=True).lower()
    except Exception as exc:  # dnspython raises several name errors; all mean "bad name"
        raise ValueError(f"bad domain name {text!r}: {exc}") from None
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"bad domain name {text!r}")
    if labels[-1].isdigit():
        raise ValueError(f"{text!r} is an IP address, not a domain name")
    return name


def is_local_name(name: str) -> bool:
    """A name under a suffix that never resolves on the public Internet (LOCAL_NAME_SUFFIXES)."""
    return any(name == suffix or name.endswith("." + suffix) for suffix in LOCAL_NAME_SUFFIXES)


def reaches_internet(targets: TargetSet) -> bool:
    """Whether probing the set's service goes beyond this machine and its private networks: one
    of its networks, ranges, endpoints or pinned addresses is a global address, or, with no
    networks to say where its names live, it has a domain that is neither pinned nor local.
    Loopback and private lab files do not, so they never get the Internet's controls."""
    def public_network(network: IPNetwork) -> bool:
        return network.network_address.is_global or network.broadcast_address.is_global

    if any(public_network(n) for n in (*targets.networks, *(r.cidr for r in targets.ranges))):
        return True
    if any(t.endpoint.ip.is_global for t in targets.endpoints):
        return True
    if any(a.is_global for d in targets.domains for a in d.addresses):
        return True
    return not targets.networks and any(not d.addresses and not is_local_name(d.name) for d in targets.domains)


def missing_controls(targets: TargetSet, keys: tuple[str, ...] = CONTROL_KEYS,
                     reaches: bool | None = None) -> tuple[str, ...]:
    """The control keys the file did not write, when its probes go to the Internet (else none)."""
    missing = tuple(key for key in keys if key not in targets.declared)
    if missing and (reaches_internet(targets) if reaches is None else reaches):
        return missing
    return ()


def with_default_controls(targets: TargetSet, builtin: TargetSet, keys: tuple[str, ...] = CONTROL_KEYS,
                          reaches: bool | None = None) -> TargetSet:
    """The set with the built-in set's controls for each of `keys` the file did not write
    (an empty array is the file's choice), when its service is on the Internet.  Built-in
    controls inside the file's networks, or named like one of its domains, are left out:
    a control must not be the service.  `default_controls` says which keys were filled.
    `reaches`: whether the probes go to the Internet, when the caller knows better (ad-hoc
    arguments); else reaches_internet(targets)."""
    missing = missing_controls(targets, keys, reaches)
    if not missing:
        return targets
    changes: dict[str, Any] = {}
    if "controls" in missing:
        changes["controls"] = tuple(c for c in builtin.controls if not in_networks(c.ip, targets.networks))
    if "control_domains" in missing:
        names = {d.name for d in targets.domains}
        changes["control_domains"] = tuple(
            d for d in builtin.control_domains
            if d.name not in names and not any(in_networks(a, targets.networks) for a in d.addresses))
    return replace(targets, **changes, declared=targets.declared | set(missing), default_controls=missing)


def load_target_file(path: str | Path) -> TargetSet:
    path = Path(path)
    try:
        raw = read_regular_file(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise TargetFileError(f"{path}: cannot read target file: {exc.strerror or exc}") from None
    return parse_target_text(raw, str(path))


def load_builtin() -> TargetSet:
    raw = resources.files("netprobe").joinpath(f"data/{BUILTIN}.toml").read_bytes()
    return parse_target_text(raw, f"<built-in {BUILTIN}>")


def parse_target_text(raw: bytes, source: str) -> TargetSet:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TargetFileError(f"{source}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if "at end of document" in message:  # name the line a person would look at: the last one
            message = message.replace("at end of document", f"at end of document, line {len(text.splitlines())}")
        raise TargetFileError(f"{source}: malformed TOML: {message}") from None
    return _Parser(source).target_set(data)


class _Parser:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str) -> TargetFileError:
        return TargetFileError(f"{self.source}: {key}: {message}")

    def target_set(self, data: dict[str, Any]) -> TargetSet:
        self.check_keys("(top level)", data, _TOP_KEYS)
        name = data.get("name", Path(self.source).stem)
        if not isinstance(name, str):
            raise self.fail("name", f"expected a string, got {name!r}")
        networks = self.unique("networks", [self.convert(f"networks[{i}]", parse_network, v)
                                            for i, v in enumerate(self.array("networks", data))])
        controls = self.unique("controls", [self.convert(f"controls[{i}]", parse_endpoint, v)
                                            for i, v in enumerate(self.array("controls", data))])
        for i, control in enumerate(controls):
            if in_networks(control.ip, networks):
                raise self.fail(f"controls[{i}]", f"{control} lies inside the service's networks; "
                                "a control must be a non-service endpoint")
        domains = [self.domain(f"domains[{i}]", v, networks) for i, v in enumerate(self.array("domains", data))]
        self.unique("domains", [d.name for d in domains])
        endpoints = [self.endpoint(f"endpoints[{i}]", v) for i, v in enumerate(self.array("endpoints", data))]
        self.unique("endpoints", [e.endpoint for e in endpoints])
        ranges = [self.range(f"ranges[{i}]", v) for i, v in enumerate(self.array("ranges", data))]
        self.unique("ranges", [(r.cidr, r.ports) for r in ranges])
        control_domains = [self.domain(f"control_domains[{i}]", v, networks, control=True)
                           for i, v in enumerate(self.array("control_domains", data))]
        self.unique("control_domains", [d.name for d in control_domains])
        for i, control in enumerate(control_domains):
            if control.name in {d.name for d in domains}:
                raise self.fail(f"control_domains[{i}]", f"{control.name} is also one of the service's domains")
        negative = None
        if "negative_controls" in data:
            negative = self.unique("negative_controls", [
                self.convert(f"negative_controls[{i}]", parse_ip, v)
                for i, v in enumerate(self.array("negative_controls", data))])
            for i, address in enumerate(negative):
                if in_networks(address, networks):
                    raise self.fail(f"negative_controls[{i}]", f"{address} lies inside the service's networks; "
                                    "a negative control must be an address that accepts no connection")
        canary = self.unique("dns_canary", [self.convert(f"dns_canary[{i}]", parse_ip, v)
                                            for i, v in enumerate(self.array("dns_canary", data))])
        datacenters = [self.datacenter(f"datacenters[{i}]", v) for i, v in enumerate(self.array("datacenters", data))]
        self.unique("datacenters", [d.dc for d in datacenters])
        if not (domains or endpoints or ranges):
            raise TargetFileError(f"{self.source}: nothing to probe: no domains, endpoints or ranges")
        return TargetSet(name=name, source=self.source, networks=tuple(networks), controls=tuple(controls),
                         domains=tuple(domains), endpoints=tuple(endpoints), ranges=tuple(ranges),
                         dns_canary=tuple(canary), control_domains=tuple(control_domains),
                         negative_controls=None if negative is None else tuple(negative),
                         datacenters=tuple(datacenters), declared=frozenset(data))

    def check_keys(self, where: str, table: dict[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")

    def array(self, key: str, table: dict[str, Any], where: str | None = None) -> list[Any]:
        value = table.get(key, [])
        if not isinstance(value, list):
            raise self.fail(where or key, f"expected an array, got {value!r}")
        return value

    def convert(self, key: str, parse, value: Any):
        try:
            return parse(value)
        except (AddressError, ValueError) as exc:
            raise self.fail(key, str(exc)) from None

    def unique(self, key: str, items: list[Any]) -> list[Any]:
        seen: set[Any] = set()
        for item in items:
            if item in seen:
                shown = item if not isinstance(item, tuple) else item[0]
                raise self.fail(key, f"duplicate entry {str(shown)!r}")
            seen.add(item)
        return items

    def domain(self, key: str, value: Any, networks: list[IPNetwork], control: bool = False) -> Domain:
        if isinstance(value, str):
            return Domain(self.convert(key, normalize_domain, value))
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a domain name or a table, got {value!r}")
        if not control and ("http" in value or "source" in value):
            which = "http" if "http" in value else "source"
            raise self.fail(f"{key}.{which}", "an expected answer is for control names (control_domains): the "
                            "service's own answers are judged against the controls, never pinned")
        self.check_keys(key, value, _CONTROL_DOMAIN_KEYS if control else _DOMAIN_KEYS)
        if "name" not in value:
            raise self.fail(key, "missing 'name'")
        name = self.convert(f"{key}.name", normalize_domain, value["name"])
        addresses = self.unique(f"{key}.addresses", [
            self.convert(f"{key}.addresses[{i}]", parse_ip, a)
            for i, a in enumerate(self.array("addresses", value, f"{key}.addresses"))])
        for i, address in enumerate(addresses):
            if control and in_networks(address, networks):
                raise self.fail(f"{key}.addresses[{i}]", f"{address} lies inside the service's networks; "
                                "a control name must not be the service's")
            if not control and networks and not in_networks(address, networks):
                raise self.fail(f"{key}.addresses[{i}]", f"pinned address {address} lies outside the "
                                "service's networks")
        if control and "group" in value:
            raise self.fail(f"{key}.group", "control names are grouped by their stage; a group applies to "
                            "the service's domains and endpoints")
        http = self.http_expectation(key, value) if control else None
        return Domain(name, tuple(addresses), self.group(key, value), http)

    def http_expectation(self, key: str, value: dict[str, Any]) -> HttpExpectation | None:
        """`http = { status, location, headers, body_contains }` with its `source`: the answer only
        the genuine server gives.  A status alone is not one: any interceptor answers some status."""
        if "http" not in value:
            if "source" in value:
                raise self.fail(f"{key}.source", "names where an http answer was recorded, but there is no 'http'")
            return None
        table = value["http"]
        if not isinstance(table, dict):
            raise self.fail(f"{key}.http",
                            f"expected a table {{ status = 200, body_contains = \"...\" }}, got {table!r}")
        self.check_keys(f"{key}.http", table, _HTTP_KEYS)
        source = value.get("source")
        if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE:
            raise self.fail(f"{key}.source", "an http expectation needs its source: where that answer was "
                            f"recorded (1 to {MAX_SOURCE} characters)")
        status = table.get("status")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599):
            raise self.fail(f"{key}.http.status", f"expected an HTTP status from 100 to 599, got {status!r}")
        location = table.get("location")
        if location is not None and (not isinstance(location, str) or not location.strip()
                                     or not location.isprintable() or len(location) > MAX_SOURCE):
            raise self.fail(f"{key}.http.location", f"expected the exact Location URL, got {location!r}")
        headers = table.get("headers", {})
        if not isinstance(headers, dict):
            raise self.fail(f"{key}.http.headers", f"expected a table {{ server = \"...\" }}, got {headers!r}")
        for name, text in headers.items():
            if name not in HTTP_EXPECTED_HEADERS:
                raise self.fail(f"{key}.http.headers", f"{name!r} is not a header netprobe records (allowed: "
                                f"{', '.join(HTTP_EXPECTED_HEADERS)}; a redirect's target is 'location')")
            if not isinstance(text, str) or not text.strip() or not text.isprintable() or len(text) > MAX_BODY_MARKER:
                raise self.fail(f"{key}.http.headers.{name}", f"expected the text the header contains, got {text!r}")
        marker = table.get("body_contains")
        if marker is not None and (not isinstance(marker, str) or not marker.strip()
                                   or len(marker.encode("utf-8")) > MAX_BODY_MARKER):
            raise self.fail(f"{key}.http.body_contains", f"expected 1 to {MAX_BODY_MARKER} bytes of text from the "
                            f"first 2048 bytes of the body, got {marker!r}")
        if location is None and not headers and marker is None:
            raise self.fail(f"{key}.http", "a status alone is not the genuine server's answer (any interceptor "
                            "answers some status): add location, headers or body_contains")
        return HttpExpectation(source.strip(), status, None if location is None else location.strip(),
                               tuple(sorted(headers.items())), marker)

    def endpoint(self, key: str, value: Any) -> EndpointTarget:
        if isinstance(value, str):
            return EndpointTarget(self.convert(key, parse_endpoint, value))
        if not isinstance(value, dict):
            raise self.fail(key, f"expected 'IP:PORT' or a table, got {value!r}")
        self.check_keys(key, value, _ENDPOINT_KEYS)
        if "address" not in value:
            raise self.fail(key, "missing 'address'")
        dc = value.get("dc")
        if dc is not None and (isinstance(dc, bool) or not isinstance(dc, int)):
            raise self.fail(f"{key}.dc", f"expected an integer, got {dc!r}")
        return EndpointTarget(self.convert(f"{key}.address", parse_endpoint, value["address"]), dc,
                              self.group(key, value))

    def group(self, key: str, value: dict[str, Any]) -> str | None:
        """A short printable name: it becomes a row of every grouped table and report."""
        group = value.get("group")
        if group is None:
            return None
        if not isinstance(group, str) or not group.strip() or len(group) > MAX_GROUP:
            raise self.fail(f"{key}.group", f"expected a name of 1 to {MAX_GROUP} characters, got {group!r}")
        if not group.isprintable():
            raise self.fail(f"{key}.group", f"control characters are not allowed in a group name: {group!r}")
        return group.strip()

    def datacenter(self, key: str, value: Any) -> Datacenter:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table {{ dc = N, city = ..., lat = ..., lon = ... }}, got {value!r}")
        self.check_keys(key, value, _DATACENTER_KEYS)
        for field_name in ("dc", "city", "lat", "lon"):
            if field_name not in value:
                raise self.fail(key, f"missing {field_name!r}")
        dc, city = value["dc"], value["city"]
        if isinstance(dc, bool) or not isinstance(dc, int):
            raise self.fail(f"{key}.dc", f"expected an integer, got {dc!r}")
        if not isinstance(city, str) or not city.strip() or not city.isprintable() or len(city) > MAX_GROUP:
            raise self.fail(f"{key}.city", f"expected a name of 1 to {MAX_GROUP} printable characters, got {city!r}")
        degrees = {}
        for field_name, bound in (("lat", 90), ("lon", 180)):
            number = value[field_name]
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not -bound <= number <= bound:
                raise self.fail(f"{key}.{field_name}", f"expected degrees between -{bound} and {bound}, got {number!r}")
            degrees[field_name] = float(number)
        return Datacenter(dc, city.strip(), degrees["lat"], degrees["lon"])

    def range(self, key: str, value: Any) -> Range:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table {{ cidr = ..., ports = [...], sample = N }}, got {value!r}")
        self.check_keys(key, value, _RANGE_KEYS)
        if "cidr" not in value:
            raise self.fail(key, "missing 'cidr'")
        cidr = self.convert(f"{key}.cidr", parse_network, value["cidr"])
        ports = self.unique(f"{key}.ports", [self.convert(f"{key}.ports[{i}]", parse_port, p)
                                             for i, p in enumerate(self.array("ports", value, f"{key}.ports"))])
        if not ports:
            raise self.fail(f"{key}.ports", "at least one port is needed")
        sample = value.get("sample", 0)
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
            raise self.fail(f"{key}.sample", f"expected a whole number >= 0, got {sample!r}")
        if sample == 0 and cidr.num_addresses > MAX_WHOLE_RANGE:
            raise self.fail(key, f"{cidr} holds {cidr.num_addresses} addresses, too many to probe whole "
                            f"(at most {MAX_WHOLE_RANGE}); set sample = N")
        if sample > cidr.num_addresses:
            raise self.fail(f"{key}.sample", f"{sample} is more than the {cidr.num_addresses} addresses of {cidr}")
        return Range(cidr, tuple(ports), sample)
