"""What the commands share: user errors, exit codes, formats, the common options,
loading a target set and making a plan.  No command module imports another;
each imports this.

Only click and light modules are imported at module level, so that `netprobe
--version` and `--help` stay fast for cron; targets, plan and probes are imported
inside the functions that use them (each marked `# lazy:`, ARCHITECTURE.md).
"""

from __future__ import annotations

import enum
import math
import os
import random
import re

import click

from netprobe.text import printable


class ExitCode(enum.IntEnum):
    OK = 0               # a completed run, whatever the verdicts
    SERVICE_FAILED = 1   # a service netprobe drives (the RIPE Atlas API) failed or was too slow
    USER_ERROR = 2       # something the user can fix: one line on stderr
    SIGINT = 130         # 128 + SIGINT
    SIGTERM = 143        # 128 + SIGTERM


# Formats of records on stdout: a table for people, one object per record for programs.
RECORD_FORMATS = ("table", "jsonl", "json", "csv")
# A run's stdout can also be one OONI measurement per run (netprobe/interop/ooni/write.py).
FORMATS = (*RECORD_FORMATS, "ooni")


class UserError(click.ClickException):
    exit_code = ExitCode.USER_ERROR


def positive_seconds(ctx, param, value):
    # click.FloatRange lets nan through (nan > 0 is False both ways), and inf would mean
    # "never" and cannot be written as JSON evidence: a check of its own.
    if value is not None and not (0 < value and math.isfinite(value)):
        raise click.BadParameter(f"must be a finite number > 0, got {value}")
    return value


def common_options(func):
    options = [
        click.option("--targets", "targets_file", envvar="NETPROBE_TARGETS", type=click.Path(dir_okay=False), default=None,
                     help="TOML target file (default: the built-in Telegram set)."),
        click.option("--resolver", "resolvers", envvar="NETPROBE_RESOLVER", multiple=True, metavar="IP[:PORT]",
                     help="DNS resolver to ask; repeatable (default: /etc/resolv.conf)."),
        click.option("--timeout", envvar="NETPROBE_TIMEOUT", type=float, default=3.0, show_default=True, callback=positive_seconds,
                     help="Deadline of one probe, in seconds."),
        click.option("--deadline", envvar="NETPROBE_DEADLINE", type=float, default=None, callback=positive_seconds,
                     help="Deadline of the whole run, in seconds (default: derived from the plan)."),
        click.option("--concurrency", envvar="NETPROBE_CONCURRENCY", type=click.IntRange(min=1), default=256, show_default=True,
                     help="Probes in flight at once."),
        click.option("--rate", envvar="NETPROBE_RATE", type=float, default=None, callback=positive_seconds, metavar="N",
                     help="Probes started per second, at most (default: unpaced)."),
        click.option("--probes", "probe_kinds", envvar="NETPROBE_PROBES", default=None, metavar="LIST",
                     help="Comma-separated probe kinds to run (default: all)."),
        click.option("--format", "fmt", envvar="NETPROBE_FORMAT", type=click.Choice(FORMATS), default=None,
                     help="Stdout format (default: table on a terminal, else jsonl)."),
        click.option("--output", envvar="NETPROBE_OUTPUT", type=click.Path(dir_okay=False), default=None,
                     help="Append every record to FILE as JSON lines, as it is measured."),
        click.option("--label", envvar="NETPROBE_LABEL", default=None, help="Name of this vantage point, stored in each record."),
        click.option("--seed", envvar="NETPROBE_SEED", type=int, default=None, help="Seed for range sampling (reproducible plans)."),
        click.option("--ca-bundle", envvar="NETPROBE_CA_BUNDLE", type=click.Path(dir_okay=False), default=None,
                     help="PEM trust store for TLS probes (default: the system's)."),
        click.option("--no-default-controls", "no_default_controls", is_flag=True, envvar="NETPROBE_NO_DEFAULT_CONTROLS",
                     help="Do not add the built-in set's controls to a target file that names none: failures at "
                          "a stage with no control of its own are then inconclusive."),
        click.option("-q", "--quiet", is_flag=True, help="Print nothing on stdout; errors still go to stderr."),
        click.option("-v", "--details", is_flag=True, envvar="NETPROBE_DETAILS",
                     help="Table: every record, not one row per probe kind and group."),
    ]
    for option in reversed(options):
        func = option(func)
    return func



# --- OONI measurement options, for run/dns/tcp and export ooni ---------------------------------

def country_code(ctx, param, value):
    if value is None:
        return None
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise click.BadParameter(f"a two-letter country code like IT, got {value!r}")
    return value.upper()


def as_number(ctx, param, value):
    if value is None:
        return None
    match = re.fullmatch(r"(?:AS)?(\d{1,10})", value.strip(), re.IGNORECASE)
    if not match or int(match.group(1)) > 4294967295:
        raise click.BadParameter(f"an AS number like AS30722, got {value!r}")
    return f"AS{int(match.group(1))}"


def ooni_options(func):
    """--probe-cc and --probe-asn: written into OONI measurements as given, never looked up."""
    func = click.option("--probe-asn", envvar="NETPROBE_PROBE_ASN", callback=as_number, metavar="ASN",
                        help="AS number written into OONI measurements, as you know it "
                             "(default AS0, OONI's 'not shared').")(func)
    func = click.option("--probe-cc", envvar="NETPROBE_PROBE_CC", callback=country_code, metavar="CC",
                        help="Country code written into OONI measurements, as you know it "
                             "(default ZZ, OONI's 'not shared').")(func)
    return func


def parse_run_options(args: list[str]) -> tuple[list[click.Parameter], dict, dict]:
    """`netprobe run`'s parameters, its options parsed from `args`, and where each value came
    from (command line, environment, default): for `netprobe cron`, which writes them down.
    Built from the same option lists as `run`, so the two cannot drift apart."""
    @click.command()
    @common_options
    @ooni_options
    def run_options(**options):
        """The options of `netprobe run`."""

    with run_options.make_context("netprobe run", list(args)) as ctx:
        params = dict(ctx.params)
        return run_options.params, params, {name: ctx.get_parameter_source(name) for name in params}


def load_targets(targets_file):
    # lazy: targets 19 ms; --version imports commands.common (test_startup)
    from netprobe.targets import load_builtin, load_target_file
    return load_target_file(targets_file) if targets_file else load_builtin()


def default_controls(targets, options, keys=None, where=None, reaches=None):
    """The set with the built-in controls for the control keys its file did not write (when its
    service is on the Internet), said on stderr; unchanged under --no-default-controls."""
    # lazy: targets 19 ms; --version imports commands.common (test_startup)
    from netprobe.targets import CONTROL_KEYS, load_builtin, missing_controls, with_default_controls
    if options.get("no_default_controls") or not missing_controls(targets, keys or CONTROL_KEYS, reaches):
        return targets  # the built-in set (and dnspython with it) is loaded only when it is needed
    builtin = load_builtin()
    filled = with_default_controls(targets, builtin, keys or CONTROL_KEYS, reaches)
    if filled.default_controls:
        added = []
        if "controls" in filled.default_controls:
            added.append(f"controls {', '.join(str(c) for c in filled.controls) or '(none usable)'}")
        if "control_domains" in filled.default_controls:
            added.append(f"control_domains {', '.join(d.name for d in filled.control_domains) or '(none usable)'}")
        where = where or printable(targets.source)
        click.echo(f"netprobe: {where} names no {' or '.join(filled.default_controls)}: using the built-in "
                   f"set's ({'; '.join(added)}); --no-default-controls to use none", err=True)
    return filled


def make_plan(targets, options, kinds=None, probe_controls=True):

    # lazy: plan 29 ms, probes 4 ms; --version imports commands.common (test_startup)
    from netprobe.plan import Plan, parse_probe_kinds
    from netprobe.probes.kinds import DNS, WEB, family_of
    from netprobe.resolvers import choose_resolvers
    kinds = kinds or parse_probe_kinds(options["probe_kinds"])
    resolvers = ()
    if options["resolvers"] or (targets.domains and any(family_of(kind) in (DNS, WEB) for kind in kinds)):
        resolvers = choose_resolvers(options["resolvers"])
    if options["ca_bundle"]:
        check_ca_bundle(options["ca_bundle"])
    seed = options["seed"] if options["seed"] is not None else random.SystemRandom().randrange(2**32)
    return Plan(targets=targets, kinds=kinds, resolvers=resolvers, seed=seed, probe_controls=probe_controls)


def check_ca_bundle(path: str) -> None:
    # lazy: ssl 10 ms, probes.https 56 ms; --version imports commands.common (test_startup)
    import ssl

    from netprobe.probes.https import make_context
    if not os.path.isfile(path):
        raise UserError(f"--ca-bundle: no such file: {path}")
    try:
        make_context(path)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"--ca-bundle: {path} is not a usable PEM trust store ({exc})") from None


