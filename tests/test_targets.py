"""Target files: the TOML contract, its validation messages, and the built-in set."""

from __future__ import annotations

import ipaddress
import textwrap
from dataclasses import replace

import pytest

from netprobe.addresses import Endpoint, in_networks
from netprobe.targets import (
    MAX_WHOLE_RANGE,
    Domain,
    EndpointTarget,
    Range,
    TargetFileError,
    load_builtin,
    load_target_file,
    normalize_domain,
    parse_target_text,
)

SOURCE = "fixture.toml"

CONTRACT_EXAMPLE = """\
name = "telegram-min"
networks = ["149.154.160.0/20", "91.108.4.0/22", "2001:67c:4e8::/48"]
controls = ["1.1.1.1:443", "[2606:4700:4700::1111]:443"]
domains = [
  "telegram.org",
  { name = "web.telegram.org", addresses = ["149.154.167.99", "2001:67c:4e8:f004::9"] },
]
endpoints = [
  "149.154.167.51:443",
  "[2001:67c:4e8:f002::a]:443",
  { address = "149.154.175.50:443", dc = 1 },
]
ranges = [
  { cidr = "91.108.4.0/22", ports = [443, 80], sample = 8 },
  { cidr = "149.154.167.0/30", ports = [443] },
]
"""

# A minimal valid body, so that each error case below has exactly one fault.
ONE_ENDPOINT = 'endpoints = ["149.154.167.51:443"]\n'


def parse(text: str):
    return parse_target_text(textwrap.dedent(text).encode(), SOURCE)


def error_of(text: str) -> str:
    with pytest.raises(TargetFileError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{SOURCE}: ")
    return message


# --- the contract format ---------------------------------------------------------

def test_contract_example_parses():
    ts = parse(CONTRACT_EXAMPLE)
    assert ts.name == "telegram-min"
    assert ts.source == SOURCE
    assert ts.networks == tuple(ipaddress.ip_network(n) for n in
                                ("149.154.160.0/20", "91.108.4.0/22", "2001:67c:4e8::/48"))
    assert ts.controls == (Endpoint(ipaddress.ip_address("1.1.1.1"), 443),
                           Endpoint(ipaddress.ip_address("2606:4700:4700::1111"), 443))
    assert ts.domains == (
        Domain("telegram.org"),
        Domain("web.telegram.org", (ipaddress.ip_address("149.154.167.99"),
                                    ipaddress.ip_address("2001:67c:4e8:f004::9"))),
    )
    assert ts.endpoints == (
        EndpointTarget(Endpoint(ipaddress.ip_address("149.154.167.51"), 443)),
        EndpointTarget(Endpoint(ipaddress.ip_address("2001:67c:4e8:f002::a"), 443)),
        EndpointTarget(Endpoint(ipaddress.ip_address("149.154.175.50"), 443), dc=1),
    )
    assert ts.ranges == (
        Range(ipaddress.ip_network("91.108.4.0/22"), (443, 80), 8),
        Range(ipaddress.ip_network("149.154.167.0/30"), (443,), 0),
    )
    assert str(ts.endpoints[1].endpoint) == "[2001:67c:4e8:f002::a]:443"
    assert ts.ranges[0].size == 8 and ts.ranges[1].size == 4


def test_name_defaults_to_the_file_stem(tmp_path):
    path = tmp_path / "my-service.toml"
    path.write_text(ONE_ENDPOINT)
    ts = load_target_file(path)
    assert ts.name == "my-service"
    assert ts.source == str(path)


def test_optional_keys_may_be_absent():
    ts = parse(ONE_ENDPOINT)
    assert ts.networks == ts.controls == ts.domains == ts.ranges == ()


def test_a_whole_16_is_allowed_without_sample():
    ts = parse('ranges = [{ cidr = "10.0.0.0/16", ports = [443] }]')
    assert ts.ranges[0].cidr.num_addresses == MAX_WHOLE_RANGE
    assert ts.ranges[0].sample == 0


@pytest.mark.parametrize("text, expected", [
    ("тест.рф", "xn--e1aybc.xn--p1ai"),
    ("ТЕСТ.РФ", "xn--e1aybc.xn--p1ai"),
    ("Telegram.ORG.", "telegram.org"),
    ("  web.telegram.org ", "web.telegram.org"),
    ("_dmarc.telegram.org", "_dmarc.telegram.org"),
    ("pluto-1.web.telegram.org", "pluto-1.web.telegram.org"),
])
def test_domain_names_are_normalized(text, expected):
    assert normalize_domain(text) == expected
    assert parse(f'domains = ["{text}"]').domains == (Domain(expected),)


# --- validation: each message names the source, the key and the bad value -------

ERROR_CASES = [
    # unknown keys
    pytest.param('colour = "red"\n' + ONE_ENDPOINT, "(top level)", "'colour'", id="unknown-top-level-key"),
    pytest.param('domains = [{ name = "a.example", adresses = [] }]', "domains[0]", "'adresses'",
                 id="unknown-domain-key"),
    pytest.param('endpoints = [{ address = "1.2.3.4:443", port = 443 }]', "endpoints[0]", "'port'",
                 id="unknown-endpoint-key"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [443], samples = 4 }]', "ranges[0]", "'samples'",
                 id="unknown-range-key"),
    # wrong types
    pytest.param('networks = "149.154.160.0/20"\n' + ONE_ENDPOINT, "networks", "'149.154.160.0/20'",
                 id="networks-not-an-array"),
    pytest.param('controls = "1.1.1.1:443"\n' + ONE_ENDPOINT, "controls", "'1.1.1.1:443'",
                 id="controls-not-an-array"),
    pytest.param('name = 5\n' + ONE_ENDPOINT, "name", "5", id="name-not-a-string"),
    pytest.param('networks = [5]\n' + ONE_ENDPOINT, "networks[0]", "5", id="network-not-a-string"),
    pytest.param('domains = [42]', "domains[0]", "42", id="domain-not-a-string-or-table"),
    pytest.param('endpoints = [443]', "endpoints[0]", "443", id="endpoint-not-a-string-or-table"),
    pytest.param('ranges = ["10.0.0.0/24"]', "ranges[0]", "'10.0.0.0/24'", id="range-not-a-table"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [443], sample = "4" }]', "ranges[0].sample", "'4'",
                 id="sample-string"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [443], sample = true }]', "ranges[0].sample",
                 "True", id="sample-bool"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [443], sample = -1 }]', "ranges[0].sample", "-1",
                 id="sample-negative"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [443], sample = 2.5 }]', "ranges[0].sample", "2.5",
                 id="sample-float"),
    pytest.param('endpoints = [{ address = "1.2.3.4:443", dc = "2" }]', "endpoints[0].dc", "'2'",
                 id="dc-string"),
    pytest.param('endpoints = [{ address = "1.2.3.4:443", dc = true }]', "endpoints[0].dc", "True",
                 id="dc-bool"),
    # missing keys inside tables
    pytest.param('domains = [{ addresses = ["1.2.3.4"] }]', "domains[0]", "'name'", id="domain-without-name"),
    pytest.param('endpoints = [{ dc = 1 }]', "endpoints[0]", "'address'", id="endpoint-without-address"),
    pytest.param('ranges = [{ ports = [443] }]', "ranges[0]", "'cidr'", id="range-without-cidr"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [] }]', "ranges[0].ports", "port",
                 id="range-without-ports"),
    # bad networks
    pytest.param('networks = ["149.154.167.1/20"]\n' + ONE_ENDPOINT, "networks[0]", "149.154.167.1/20",
                 id="cidr-host-bits-set"),
    pytest.param('networks = ["telegram/20"]\n' + ONE_ENDPOINT, "networks[0]", "telegram/20", id="cidr-garbage"),
    pytest.param('networks = ["10.0.0.0/33"]\n' + ONE_ENDPOINT, "networks[0]", "10.0.0.0/33",
                 id="cidr-prefix-too-long"),
    pytest.param('ranges = [{ cidr = "10.0.0.1/24", ports = [443] }]', "ranges[0].cidr", "10.0.0.1/24",
                 id="range-cidr-host-bits-set"),
    # bad endpoints and ports
    pytest.param('endpoints = ["2001:67c:4e8:f002::a:443"]', "endpoints[0]", "2001:67c:4e8:f002::a:443",
                 id="ipv6-endpoint-without-brackets"),
    pytest.param('endpoints = ["[149.154.167.51]:443"]', "endpoints[0]", "[149.154.167.51]:443",
                 id="ipv4-in-brackets"),
    pytest.param('endpoints = ["149.154.167.51"]', "endpoints[0]", "149.154.167.51", id="endpoint-without-port"),
    pytest.param('endpoints = ["telegram.org:443"]', "endpoints[0]", "telegram.org", id="endpoint-hostname"),
    pytest.param('endpoints = ["1.2.3.4:0"]', "endpoints[0]", "'0'", id="endpoint-port-0"),
    pytest.param('endpoints = ["1.2.3.4:65536"]', "endpoints[0]", "'65536'", id="endpoint-port-65536"),
    pytest.param('endpoints = ["1.2.3.4:x"]', "endpoints[0]", "'x'", id="endpoint-port-x"),
    pytest.param('endpoints = [{ address = "1.2.3.4:65536" }]', "endpoints[0].address", "65536",
                 id="endpoint-table-bad-port"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [0] }]', "ranges[0].ports[0]", "0",
                 id="range-port-0"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [443, 65536] }]', "ranges[0].ports[1]", "65536",
                 id="range-port-65536"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = ["x"] }]', "ranges[0].ports[0]", "'x'",
                 id="range-port-x"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [true] }]', "ranges[0].ports[0]", "True",
                 id="range-port-bool"),
    # range sizes
    pytest.param('ranges = [{ cidr = "10.0.0.0/15", ports = [443] }]', "ranges[0]", "10.0.0.0/15",
                 id="range-too-large-without-sample"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/30", ports = [443], sample = 5 }]', "ranges[0].sample", "5",
                 id="sample-larger-than-range"),
    # duplicates
    pytest.param('networks = ["10.0.0.0/8", "10.0.0.0/8"]\n' + ONE_ENDPOINT, "networks", "10.0.0.0/8",
                 id="duplicate-network"),
    pytest.param('networks = ["2001:67c:4e8::/48", "2001:67C:04E8:0::/48"]\n' + ONE_ENDPOINT, "networks",
                 "2001:67c:4e8::/48", id="duplicate-network-other-spelling"),
    pytest.param('domains = ["telegram.org", "telegram.org"]', "domains", "telegram.org", id="duplicate-domain"),
    pytest.param('domains = ["telegram.org", "Telegram.ORG"]', "domains", "telegram.org",
                 id="duplicate-domain-case"),
    pytest.param('domains = ["telegram.org", "telegram.org."]', "domains", "telegram.org",
                 id="duplicate-domain-trailing-dot"),
    pytest.param('domains = ["t.me", { name = "T.ME." }]', "domains", "t.me", id="duplicate-domain-string-and-table"),
    pytest.param('domains = ["xn--e1aybc.xn--p1ai", "тест.рф"]', "domains", "xn--e1aybc.xn--p1ai",
                 id="duplicate-domain-idn-and-punycode"),
    pytest.param('endpoints = ["1.2.3.4:443", { address = "1.2.3.4:443", dc = 2 }]', "endpoints", "1.2.3.4:443",
                 id="duplicate-endpoint"),
    pytest.param('endpoints = ["[2001:db8::a]:443", "[2001:DB8:0:0::A]:443"]', "endpoints", "[2001:db8::a]:443",
                 id="duplicate-ipv6-endpoint-other-spelling"),
    pytest.param('controls = ["1.1.1.1:443", "1.1.1.1:443"]\n' + ONE_ENDPOINT, "controls", "1.1.1.1:443",
                 id="duplicate-control"),
    pytest.param('ranges = [{ cidr = "10.0.0.0/24", ports = [443, 443] }]', "ranges[0].ports", "443",
                 id="duplicate-port"),
    pytest.param('domains = [{ name = "a.example", addresses = ["1.2.3.4", "1.2.3.4"] }]',
                 "domains[0].addresses", "1.2.3.4", id="duplicate-pinned-address"),
    # controls and pinned addresses against networks
    pytest.param('networks = ["1.1.1.0/24"]\ncontrols = ["1.1.1.1:443"]\n' + ONE_ENDPOINT, "controls[0]",
                 "1.1.1.1:443", id="control-inside-networks"),
    pytest.param('networks = ["149.154.160.0/20"]\n'
                 'domains = [{ name = "web.telegram.org", addresses = ["149.154.167.99", "8.8.8.8"] }]',
                 "domains[0].addresses[1]", "8.8.8.8", id="pinned-address-outside-networks"),
    pytest.param('domains = [{ name = "a.example", addresses = ["not-an-ip"] }]', "domains[0].addresses[0]",
                 "not-an-ip", id="pinned-address-garbage"),
    # invalid domain names
    pytest.param('domains = ["web telegram.org"]', "domains[0]", "web telegram.org", id="domain-with-space"),
    pytest.param('domains = ["a..b"]', "domains[0]", "a..b", id="domain-empty-label"),
    pytest.param('domains = ["' + "a" * 64 + '.org"]', "domains[0]", "a" * 64, id="domain-label-over-63"),
    pytest.param('domains = ["localhost"]', "domains[0]", "localhost", id="domain-single-label"),
    pytest.param('domains = ["-bad.example"]', "domains[0]", "-bad.example", id="domain-leading-hyphen"),
    pytest.param('domains = ["*.telegram.org"]', "domains[0]", "*.telegram.org", id="domain-wildcard"),
    pytest.param('domains = [""]', "domains[0]", "''", id="domain-empty"),
    pytest.param('domains = [{ name = "a b.example" }]', "domains[0].name", "a b.example",
                 id="domain-table-bad-name"),
    # nothing to probe
    pytest.param('name = "empty"\nnetworks = ["10.0.0.0/8"]\ncontrols = ["1.1.1.1:443"]', "nothing to probe", "",
                 id="empty-target-set"),
]


@pytest.mark.parametrize("text, key, value", ERROR_CASES)
def test_validation_error_names_key_and_value(text, key, value):
    message = error_of(text)
    assert f": {key}" in message
    assert value in message


@pytest.mark.parametrize("text, key", [
    ('domains = [{ name = "a.example", addresses = "1.2.3.4" }]', "domains[0].addresses"),
    ('ranges = [{ cidr = "10.0.0.0/24", ports = 443 }]', "ranges[0].ports"),
])
def test_nested_array_type_error_names_the_full_key(text, key):
    assert f": {key}:" in error_of(text)


def test_ip_literal_is_not_a_domain_name():
    assert "domains[0]" in error_of('domains = ["1.2.3.4"]')


@pytest.mark.parametrize("port", ["4_43", "+443"])
def test_port_must_be_plain_digits(port):
    error_of(f'endpoints = ["1.2.3.4:{port}"]')


def test_malformed_toml_names_the_line():
    message = error_of('name = "x"\nnetworks = ["10.0.0.0/8"]\nendpoints = ["1.2.3.4:443"\nranges = [')
    assert "malformed TOML" in message
    assert "line 4" in message


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\u00e9"\n'.encode("latin-1") + ONE_ENDPOINT.encode())
    with pytest.raises(TargetFileError) as info:
        load_target_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "UTF-8" in message
    assert "\n" not in message


@pytest.mark.parametrize("make", [lambda d: d / "missing.toml", lambda d: d], ids=["missing", "directory"])
def test_unreadable_file(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(TargetFileError) as info:
        load_target_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read target file")
    assert "\n" not in message


def test_load_target_file_reads_the_contract_example(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(CONTRACT_EXAMPLE, encoding="utf-8")
    assert load_target_file(str(path)) == replace(parse(CONTRACT_EXAMPLE), source=str(path))


# --- the built-in set ------------------------------------------------------------

@pytest.fixture(scope="module")
def builtin():
    return load_builtin()


def test_builtin_loads(builtin):
    assert builtin.name == "telegram"
    assert builtin.networks and builtin.controls and builtin.domains and builtin.endpoints and builtin.ranges


def test_builtin_controls_are_outside_the_networks(builtin):
    for control in builtin.controls:
        assert not in_networks(control.ip, builtin.networks), control


def test_builtin_has_every_dc(builtin):
    dcs = [e.dc for e in builtin.endpoints if e.dc is not None]
    assert len(dcs) >= 5
    assert set(dcs) >= {1, 2, 3, 4, 5}
    for dc in range(1, 6):
        families = {e.endpoint.family for e in builtin.endpoints if e.dc == dc}
        assert families == {4, 6}, f"DC{dc} should have IPv4 and IPv6 endpoints"


def test_builtin_endpoints_are_inside_the_networks(builtin):
    for target in builtin.endpoints:
        assert in_networks(target.endpoint.ip, builtin.networks), target


def test_builtin_ranges_are_inside_the_networks(builtin):
    for rng in builtin.ranges:
        assert any(rng.cidr.version == n.version and rng.cidr.subnet_of(n) for n in builtin.networks), rng


def test_builtin_groups_the_web_clients_websocket_hosts_and_the_cdn_hosts(builtin):
    groups: dict = {}
    for domain in builtin.domains:
        groups.setdefault(domain.group, set()).add(domain.name)
    websocket = groups["web WebSocket hosts"]
    assert len(websocket) == 30 and all(n.endswith(".web.telegram.org") for n in websocket)
    assert {"pluto.web.telegram.org", "zws1-1.web.telegram.org", "kws5.web.telegram.org"} <= websocket
    assert groups["media CDN hosts"] == {"cdn1.cdn-telegram.org", "cdn4.cdn-telegram.org", "cdn5.cdn-telegram.org",
                                         "cdn4.telesco.pe"}
    assert {"telegram.org", "web.telegram.org", "t.me"} <= groups["web sites and links"]


def test_domains_and_endpoints_take_an_optional_group():
    t = parse('domains = ["t.me", { name = "kws1.web.telegram.org", group = "web WebSocket" }]\n'
              'endpoints = [{ address = "149.154.175.50:443", dc = 1, group = "DC1 (all ports)" }, "1.2.3.4:443"]')
    assert [d.group for d in t.domains] == [None, "web WebSocket"]
    assert [e.group for e in t.endpoints] == ["DC1 (all ports)", None]


@pytest.mark.parametrize("text, fragment", [
    ('domains = [{ name = "t.me", group = 5 }]', "domains[0].group"),
    ('domains = [{ name = "t.me", group = "  " }]', "domains[0].group"),
    ('domains = [{ name = "t.me", group = "%s" }]' % ("x" * 65), "domains[0].group"),
    ('domains = [{ name = "t.me", group = "a\\u001b[31mb" }]', "control characters"),
    ('endpoints = [{ address = "1.2.3.4:443", group = ["a"] }]', "endpoints[0].group"),
    ('domains = ["t.me"]\ncontrol_domains = [{ name = "x.org", group = "c" }]', "control_domains[0].group"),
])
def test_a_bad_group_is_named(text, fragment):
    with pytest.raises(TargetFileError) as info:
        parse(text)
    assert fragment in str(info.value)


def test_builtin_pins_web_telegram_org(builtin):
    pinned = {d.name: d.addresses for d in builtin.domains}
    assert ipaddress.ip_address("149.154.167.99") in pinned["web.telegram.org"]


# --- control names and negative controls ----------------------------------------------------

def test_control_domains_take_the_form_of_domains_and_may_be_pinned_anywhere_but_the_service():
    t = parse('networks = ["149.154.160.0/20"]\ndomains = ["t.me"]\n'
              'control_domains = ["Example.COM.", { name = "control.lab", addresses = ["10.88.0.1", "fd88::1"] }]')
    assert [d.name for d in t.control_domains] == ["example.com", "control.lab"]
    assert [str(a) for a in t.control_domains[1].addresses] == ["10.88.0.1", "fd88::1"]
    assert t.negative_controls is None  # the built-in default applies (netprobe/plan.py)


@pytest.mark.parametrize("text, fragment", [
    ('control_domains = ["t.me"]', "also one of the service's domains"),
    ('control_domains = [{ name = "x.org", addresses = ["149.154.167.99"] }]', "inside the service's networks"),
    ('control_domains = ["x.org", "X.org"]', "duplicate entry"),
    ('control_domains = "x.org"', "expected an array"),
    ('negative_controls = ["149.154.167.1"]', "inside the service's networks"),
    ('negative_controls = ["192.0.2.1:443"]', "negative_controls[0]"),
])
def test_bad_control_entries_are_named(text, fragment):
    with pytest.raises(TargetFileError) as info:
        parse('networks = ["149.154.160.0/20"]\ndomains = ["t.me"]\n' + text)
    assert fragment in str(info.value)


def test_an_empty_negative_controls_turns_the_default_off():
    from netprobe.plan import Plan
    t = parse('endpoints = ["149.154.167.51:443"]\nnegative_controls = []')
    assert t.negative_controls == ()
    assert Plan(t, ("tcp",), (), 1).negative_controls() == ()


def test_the_default_negative_controls_follow_the_families_and_ports_used():
    from netprobe.plan import Plan
    plan = Plan(parse('endpoints = ["149.154.167.51:443", "149.154.167.51:5222"]'), ("tcp",), (), 1)
    stages = [(t.target, dict(t.context)["stage"]) for t in plan.controls()]
    # Every IPv4 kind of place that accepts no connection, on every port: the three documentation
    # ranges and a host that serves DNS only (one address would be one guess about an interceptor).
    assert stages == [(f"{a}:{p}", "interception") for a in ("192.0.2.1", "198.51.100.1", "203.0.113.1", "198.41.0.4")
                      for p in (443, 5222)]
    loopback = Plan(parse('endpoints = ["127.0.0.1:443", "[::1]:443"]'), ("tcp",), (), 1)
    assert loopback.controls() == []  # nothing on a path to intercept, and nothing leaves this machine
