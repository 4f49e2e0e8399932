"""Target files: TOML describing where a service lives and what to probe.

The top-level keys (name, networks, controls, domains, endpoints, ranges) are
a contract other tools write to; validation names the file, the key and the
bad value so that a person can fix the file from the message alone.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
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

# A range probed whole may hold at most this many addresses; beyond, `sample`.
MAX_WHOLE_RANGE = 65536
# A target file larger than this is refused unread (the built-in set is ~2 KB):
# `--targets /dev/zero` must be an error, not a process that eats all memory.
MAX_FILE_BYTES = 4 * 1024 * 1024
BUILTIN = "telegram"

_TOP_KEYS = {"name", "description", "networks", "controls", "control_domains", "negative_controls", "domains",
             "endpoints", "ranges", "dns_canary", "datacenters"}
_DOMAIN_KEYS = {"name", "addresses", "note", "group"}
_ENDPOINT_KEYS = {"address", "dc", "note", "group"}
# A group names a family of targets in reports (netprobe report folds its members into one row).
MAX_GROUP = 64
_RANGE_KEYS = {"cidr", "ports", "sample", "note"}
_DATACENTER_KEYS = {"dc", "city", "lat", "lon", "source", "note"}
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class TargetFileError(ValueError):
    """A target file that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Domain:
    name: str
    addresses: tuple[IPAddress, ...] = ()
    group: str | None = None  # a family of names shown as one row (records: evidence.group)


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


def normalize_domain(text: object) -> str:
    """ASCII (IDNA) form of a domain name, lower case, without the final dot."""
    import dns.name  # here: a target file without domains never loads dnspython

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


def load_target_file(path: str | Path) -> TargetSet:
    path = Path(path)
    try:
        raw = read_regular_file(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise TargetFileError(f"{path}: cannot read target file: {exc.strerror or exc}") from None
    return parse_target_text(raw, str(path))


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, else OSError.

    Opened non-blocking so that a FIFO nobody writes to is refused rather than
    waited on forever; devices (/dev/zero) and oversized files are refused
    before anything is read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while we read it
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data


def load_builtin() -> TargetSet:
    from importlib import resources
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
                         datacenters=tuple(datacenters))

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
        self.check_keys(key, value, _DOMAIN_KEYS)
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
        return Domain(name, tuple(addresses), self.group(key, value))

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
