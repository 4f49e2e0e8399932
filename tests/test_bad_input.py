"""Bad input, every kind: one clear line on stderr, exit 2, no traceback, no hang.

Most kinds are covered already and not repeated here: tests/test_cli.py
(BAD_TARGET_FILES: malformed TOML with its line number, unknown key, wrong type,
bad CIDR, bad port, IPv6 without brackets, range too large, duplicate, bad
domain, empty target set, not UTF-8; missing file and directory; a resolver that
is not an address; a missing CA bundle; --timeout <= 0; an unknown probe kind)
and tests/test_targets.py (every validation message, IDN normalisation,
overlong labels).  Added here: the gaps (files that are not regular files, an
unreadable file, non-finite numbers, IDN and overlong names through the CLI,
control characters in messages) and a property-based test over random target
files and flag combinations.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import shutil
import signal
import socket
import subprocess

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from netprobe.addresses import AddressError, parse_endpoint, parse_ip, parse_network
from netprobe.commands import main
from tests.support.fake_dns import FakeDNS
from tests.support.hostile import REPO_ROOT, netprobe_cmd, netprobe_env, run_netprobe, toml_list


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("netprobe: error: "), proc.stderr
    assert all(ch.isprintable() for ch in lines[0]), repr(lines[0])
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


# --- files that are not target files -----------------------------------------------------------

def test_an_endless_device_as_target_file_is_refused_unread():
    proc, wall = run_netprobe("targets", "--targets", "/dev/zero", timeout=20)
    assert_user_error(proc, "/dev/zero", "not a regular file")
    assert wall < 10


def test_a_fifo_as_target_file_is_refused_not_waited_on(fifo):
    proc, _ = run_netprobe("targets", "--targets", str(fifo), timeout=20)
    assert_user_error(proc, str(fifo), "not a regular file")


def test_an_oversized_target_file_is_refused(tmp_path):
    from netprobe.targets import MAX_FILE_BYTES
    path = tmp_path / "huge.toml"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    proc, _ = run_netprobe("targets", "--targets", str(path))
    assert_user_error(proc, str(path), "larger than")


def test_a_fifo_as_output_file_is_refused_not_waited_on(fifo, tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('endpoints = ["127.0.0.1:9"]\n')
    proc, _ = run_netprobe("run", "--targets", str(path), "--probes", "tcp", "--output", str(fifo), timeout=20)
    assert_user_error(proc, str(fifo), "not a regular file")


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs root and setpriv (root reads any file unless CAP_DAC_OVERRIDE is dropped)")
def test_an_unreadable_target_file(tmp_path):
    path = tmp_path / "secret.toml"
    path.write_text('endpoints = ["127.0.0.1:9"]\n')
    path.chmod(0)
    # As root, reading ignores permissions: drop the capabilities that allow it.
    proc = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                           "--inh-caps", "-dac_override,-dac_read_search",
                           *netprobe_cmd("targets", "--targets", str(path))],
                          capture_output=True, text=True, timeout=30, env=netprobe_env(), cwd=REPO_ROOT)
    assert_user_error(proc, str(path), "not readable")


# --- numbers and names --------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--timeout", "inf"), ("--timeout", "nan"), ("--timeout", "-inf"),
                                           ("--deadline", "inf"), ("--deadline", "nan"), ("--deadline", "-3")])
def test_non_finite_seconds_are_refused(option, value, capsys):
    # inf used to pass and then be written as `Infinity`, which is not JSON.
    with pytest.raises(SystemExit) as info:
        main(["targets", "--targets", os.devnull, option, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"netprobe: error: Invalid value for '{option}'") and err.count("\n") == 1


def test_internationalized_names_are_converted_not_rejected(tmp_path):
    path = tmp_path / "idn.toml"
    path.write_text('domains = ["тест.рф", { name = "пример.испытание" }]\n', encoding="utf-8")
    proc, _ = run_netprobe("targets", "--targets", str(path), "--resolver", "127.0.0.1:53", "--probes", "dns",
                           "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"target": "xn--e1aybc.xn--p1ai"') == 1
    assert '"target": "xn--e1afmkfd.xn--80akhbyknj4f"' in proc.stdout


def test_internationalized_name_on_the_command_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["dns", "ТЕСТ.рф", "--resolver", "127.0.0.1:1", "--timeout", "0.2", "--format", "jsonl"])
    assert info.value.code == 0
    assert '"target":"xn--e1aybc.xn--p1ai"' in capsys.readouterr().out


@pytest.mark.parametrize("name", [".".join(["a" * 60] * 5), "a" * 64 + ".example", "exa mple.com", "-x.example",
                                  "x..example", "127.0.0.1"], ids=["over-253", "label-over-63", "space",
                                                                   "leading-hyphen", "empty-label", "an-ip"])
def test_invalid_or_overlong_names_on_the_command_line(name):
    proc, _ = run_netprobe("dns", name, "--resolver", "127.0.0.1:1")
    assert_user_error(proc)


def test_control_characters_in_a_message_are_shown_escaped(tmp_path):
    path = tmp_path / "evil\x1b[31m\r.toml"
    path.write_text('name = "x"\nendpoints = ["127.0.0.1:9"\n')
    proc, _ = run_netprobe("targets", "--targets", str(path))
    line = assert_user_error(proc, "malformed TOML", "line 2")  # an error at the end still names a line
    assert "evil\\x1b[31m .toml" in line  # ESC shown escaped; CR, like all whitespace, one space


# --- property: random target files and flags ------------------------------------------------------
#
# Half the examples are valid (a loopback service, controls at [::1]) and really run
# their probes against 127.0.0.0/8 and ::1 with 0.05-0.3 s timeouts; the other half
# have junk anywhere.  Every address the generators make is loopback, junk that would
# parse as anything else is filtered out, and `loopback_only` records any socket
# operation aimed elsewhere as a failure.  `netprobe targets` probes nothing at all.

LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
KINDS = ["dns", "dns_injection", "tcp", "https", "http", "mtproto", "mtproto_abridged", "mtproto_obfuscated2"]


def is_loopback_net(net) -> bool:
    return net.subnet_of(LOOPBACK_V4) if net.version == 4 else net == ipaddress.ip_network("::1/128")


def reaches_beyond_loopback(text: object) -> bool:
    """Would netprobe accept `text` as an address, endpoint, network or DoH URL outside loopback?"""
    if not isinstance(text, str):
        return False
    if "://" in text:
        return True
    for parse in (parse_ip, parse_endpoint, lambda t: parse_endpoint(t, default_port=53)):
        try:
            value = parse(text)
        except (AddressError, ValueError):
            continue
        address = value if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else value.ip
        if not address.is_loopback:
            return True
    try:
        return not is_loopback_net(parse_network(text))
    except (AddressError, ValueError):
        return False


junk = st.one_of(
    st.text(max_size=30),
    st.integers(-70000, 70000),
    st.booleans(),
    st.sampled_from(["", " ", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:443", "[127.0.0.1]:80",
                     "127.0.0.1/8", "127.0.0.0/33", "a..b", "x" * 300, "тест.рф", "*.x.test", "[::1]", "\x1b[31m"]),
).filter(lambda v: not reaches_beyond_loopback(v))
port = st.integers(1, 65535)
v4 = st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(1, 254)).map(lambda t: "127.%d.%d.%d" % t)
endpoint = st.builds(lambda a, p: f"{a}:{p}", v4, port)
network = st.one_of(st.builds(lambda a, n: str(ipaddress.ip_network(f"127.{a}.0.0/{n}", strict=False)),
                              st.integers(0, 255), st.integers(16, 32)), st.just("::1/128"))
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domain = st.one_of(st.builds(lambda a, b: f"{a}.{b}.test", label, label),
                   st.text(alphabet="тестпримерüß", min_size=1, max_size=8).map(lambda t: f"{t}.test"))
small_range = st.fixed_dictionaries(
    {"cidr": st.builds(lambda a, b, n: str(ipaddress.ip_network(f"127.{a}.{b}.0/{n}", strict=False)),
                       st.integers(0, 255), st.integers(0, 255), st.integers(28, 32)),
     "ports": st.lists(port, min_size=1, max_size=2, unique=True)},
    optional={"sample": st.integers(0, 4)})


def target_file(broken: bool):
    """A target file; when `broken`, any value may be junk and an unknown key may appear."""
    def maybe(strategy):
        return st.one_of(strategy, strategy, strategy, junk) if broken else strategy

    def several(strategy, max_size, min_size=0):  # duplicates are an error: only when broken
        return st.lists(maybe(strategy), min_size=min_size, max_size=max_size, unique_by=None if broken else str)

    optional = {
        "name": maybe(st.text(max_size=20)),
        "controls": several(st.builds(lambda p: f"[::1]:{p}", maybe(port)), 2),
        "domains": several(st.one_of(domain, st.fixed_dictionaries(
            {"name": domain}, optional={"addresses": several(v4, 2)})), 3),
        "ranges": several(small_range, 2),
        "dns_canary": several(v4, 1),
    }
    required = {
        "networks": several(network, 3) if broken else st.just(["127.0.0.0/8"]),
        "endpoints": several(st.one_of(st.builds(lambda a, p: f"{a}:{p}", v4, maybe(port)), st.fixed_dictionaries(
            {"address": endpoint}, optional={"dc": maybe(st.integers(1, 5))})), 4, min_size=0 if broken else 1),
    }
    if broken:
        optional["colour"] = st.just("red")
    return st.fixed_dictionaries(required, optional=optional)


def flags(broken: bool):
    def maybe(strategy, bad):
        return st.one_of(strategy, strategy, st.sampled_from(bad)) if broken else strategy

    optional = {
        "--timeout": maybe(st.floats(0.05, 0.3).map(lambda f: f"{f:.2f}"), ["0", "-1", "abc", "inf", "nan"]),
        "--deadline": maybe(st.floats(0.5, 2).map(lambda f: f"{f:.2f}"), ["0", "x", "inf"]),
        "--concurrency": maybe(st.integers(1, 3000).map(str), ["0", "-3", "many"]),
        "--probes": maybe(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4).map(",".join),
                          ["bogus", "", "tcp,", ",", "dns;tcp"]),
        "--format": maybe(st.sampled_from(["table", "jsonl", "json", "csv"]), ["xml", ""]),
        "--seed": maybe(st.integers(-2**40, 2**40).map(str), ["seed", "1.5"]),
        "--label": st.text(max_size=10).filter(lambda t: "\x00" not in t),
        "-q": st.just(None),
    }
    if broken:
        optional["--ca-bundle"] = st.sampled_from(["/nonexistent/ca.pem", os.devnull])
        optional["--resolver"] = junk.map(str).filter(lambda t: t.strip() != "" and "\x00" not in t)
    return st.fixed_dictionaries({}, optional=optional)


def command(broken: bool):
    def maybe(strategy):
        return st.one_of(strategy, strategy, junk.map(str)) if broken else strategy

    return st.one_of(
        st.just(("run",)), st.just(("run",)), st.just(("targets",)),
        st.builds(lambda e: ("tcp", *e), st.lists(maybe(endpoint), min_size=1, max_size=3)),
        st.builds(lambda d: ("dns", *d), st.lists(maybe(domain), min_size=1, max_size=2)),
    ).filter(lambda argv: all("\x00" not in a for a in argv))


def render_toml(data: dict) -> str:
    lines = []
    for key, value in data.items():
        lines.append(f"{key} = {toml_list(value) if isinstance(value, list) else toml_list([value])[1:-1]}")
    return "\n".join(lines) + "\n"


class Hang(BaseException):
    """An example ran past its bound: netprobe hung."""


@contextlib.contextmanager
def loopback_only(violations: list):
    """Record every socket operation aimed beyond loopback (a safety net under the
    generators, which only make loopback addresses)."""
    real_connect, real_sendto, real_getaddrinfo = socket.socket.connect, socket.socket.sendto, socket.getaddrinfo

    def check(address):
        host = address[0] if isinstance(address, tuple) else address
        try:
            if not ipaddress.ip_address(host).is_loopback:
                violations.append(address)
        except ValueError:
            violations.append(address)

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def sendto(self, data, *args):
        check(args[-1])
        return real_sendto(self, data, *args)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None:
            check((host.decode() if isinstance(host, bytes) else host,))
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.sendto, socket.getaddrinfo = connect, sendto, getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.sendto, socket.getaddrinfo = real_connect, real_sendto, real_getaddrinfo


@pytest.fixture(scope="module")
def resolver():
    with FakeDNS({}) as server:  # NXDOMAIN for everything, at once
        yield server.address


EXAMPLE_BOUND_S = 15


def invoke(argv: list[str]) -> tuple[object, str, str]:
    """main(argv) in this process, under a SIGALRM bound; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()

    def hang(signum, frame):
        raise Hang(f"netprobe {' '.join(argv)} ran past {EXAMPLE_BOUND_S} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, EXAMPLE_BOUND_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as exc:
                code = exc.code
            else:
                code = None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.filter_too_much])
@given(draw=st.data(), raw=st.one_of(st.none(), st.none(), st.none(), st.text(max_size=60)))
def test_random_target_files_and_flags_end_in_0_or_2_never_a_traceback_or_hang(tmp_path, resolver, draw, raw):
    broken = draw.draw(st.booleans(), label="broken")
    data = draw.draw(target_file(broken), label="target file")
    cmd = draw.draw(command(broken), label="command")
    options = draw.draw(flags(broken), label="flags")
    path = tmp_path / "random.toml"
    text = render_toml(data) if not broken or raw is None or reaches_beyond_loopback(raw) else raw
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    argv = [*cmd, "--targets", str(path)]
    for flag, value in options.items():
        argv += [flag] if value is None else [flag, value]
    # Anything that probes asks only this loopback resolver (a junk --resolver above is an error).
    if "--resolver" not in options:
        argv += ["--resolver", resolver]
    if "--timeout" not in options:
        argv += ["--timeout", "0.2"]
    if "--deadline" not in options:
        argv += ["--deadline", "3"]
    violations: list = []
    with loopback_only(violations):
        code, out, err = invoke(argv)
    event(f"{'broken' if broken else 'valid'} {cmd[0]}: exit {code}")  # see --hypothesis-show-statistics
    assert violations == [], f"traffic beyond loopback: {violations}"
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("netprobe: error: "), (argv, err)
        assert all(ch.isprintable() for ch in lines[0]), repr(lines[0])
