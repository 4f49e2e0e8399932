"""The probing commands: run, dns, tcp, and targets (the plan, without probing)."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace

import click

from netprobe.commands.common import (UserError, common_options, default_controls, load_targets,
                                      make_plan, ooni_options)
from netprobe.text import printable


@click.command()
@common_options
@ooni_options
def run(**options):
    """Run every probe over a target set (default: the built-in Telegram set)."""
    targets = load_targets(options["targets_file"])
    if options["targets_file"]:
        targets = default_controls(targets, options)
    # lazy: session (engine) 108 ms; --help imports every command module (test_startup)
    from netprobe.session import execute_plan
    return execute_plan(make_plan(targets, options), options)


def adhoc_base(options):
    """What `dns` and `tcp` weigh their arguments against: --targets as written, or the built-in
    set's networks with no controls of its own, so that its controls come in as defaults (said
    on stderr) and only for arguments on the Internet (a loopback check sends nothing out)."""

    # lazy: targets 19 ms; --help imports every command module (test_startup)
    from netprobe.targets import CONTROL_KEYS
    targets = load_targets(options["targets_file"])
    if options["targets_file"]:
        return targets
    return replace(targets, controls=(), control_domains=(), declared=targets.declared - set(CONTROL_KEYS))


def adhoc_source(options):
    return None if options["targets_file"] else "the command line"


def arguments_reach_internet(adhoc):
    """Whether the command's own names or endpoints are on the Internet (the file's networks
    describe the service, not where these arguments lead): `tcp 127.0.0.1:9` adds nothing."""

    # lazy: targets 19 ms; --help imports every command module (test_startup)
    from netprobe.targets import reaches_internet
    return reaches_internet(replace(adhoc, networks=()))


def probes_controls(adhoc, options):
    """A file's controls are probed as written; without one, only the built-in defaults are."""
    return bool(options["targets_file"]) or bool(adhoc.default_controls)


@click.command()
@click.argument("names", nargs=-1, required=True)
@common_options
@ooni_options
def dns(names, **options):
    """Ask the resolvers for NAME's A and AAAA records and judge the answers.

    Answers are judged against the networks of --targets (default: Telegram's).
    """

    # lazy: targets 19 ms; --help imports every command module (test_startup)
    from netprobe.targets import Domain, normalize_domain
    try:
        domains = tuple(dict.fromkeys(Domain(normalize_domain(n)) for n in names))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    adhoc = replace(adhoc_base(options), domains=domains, endpoints=(), ranges=())
    # DNS is judged by the control names asked at the same resolvers: only those are added.
    adhoc = default_controls(adhoc, options, ("control_domains",), where=adhoc_source(options),
                             reaches=arguments_reach_internet(adhoc))
    plan = make_plan(adhoc, options, kinds=("dns",), probe_controls=probes_controls(adhoc, options))
    # lazy: session (engine) 108 ms; --help imports every command module (test_startup)
    from netprobe.session import execute_plan
    return execute_plan(plan, options)


@click.command()
@click.argument("endpoints", nargs=-1, required=True, metavar="IP:PORT...")
@common_options
@ooni_options
def tcp(endpoints, **options):
    """Connect to each IP:PORT (IPv6 as [ADDR]:PORT) and judge the outcome.

    Controls are probed first only when --targets names a file.
    """

    # lazy: addresses 3 ms, targets 19 ms; --help imports every command module (test_startup)
    from netprobe.addresses import parse_endpoint
    from netprobe.targets import EndpointTarget
    parsed = tuple(dict.fromkeys(EndpointTarget(parse_endpoint(e)) for e in endpoints))
    adhoc = replace(adhoc_base(options), domains=(), endpoints=parsed, ranges=())
    # TCP is judged by the control connections: only those are added.
    adhoc = default_controls(adhoc, options, ("controls",), where=adhoc_source(options),
                             reaches=arguments_reach_internet(adhoc))
    plan = make_plan(adhoc, options, kinds=("tcp",), probe_controls=probes_controls(adhoc, options))
    # lazy: session (engine) 108 ms; --help imports every command module (test_startup)
    from netprobe.session import execute_plan
    return execute_plan(plan, options)


@click.command()
@common_options
def targets(**options):
    """Show the expanded plan: every probe a run would perform, without probing."""
    # lazy: output 25 ms; --help imports every command module (test_startup)
    from netprobe.output import default_format

    target_set = load_targets(options["targets_file"])
    if options["targets_file"]:
        target_set = default_controls(target_set, options)
    plan = make_plan(target_set, options)
    fmt = default_format(options["fmt"])
    if fmt == "ooni":
        raise UserError("--format ooni writes measured runs; the plan is not one")
    rows = [{"probe": t.kind, "target": t.target,
             "address": str(t.endpoint or t.resolver or ""), **{k: v for k, v in t.context}}
            for t in [*plan.controls(), *plan.tasks()]]
    if options["quiet"]:
        return 0
    if fmt == "table":
        # lazy: rich 23 ms and up; --help imports every command module (test_startup)
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        # A title string would be parsed as markup: the file's name is text, never styling.
        table = Table(title=Text(f"plan for {printable(target_set.name)} (seed {plan.seed})"))
        for column in ("probe", "target", "address"):
            table.add_column(column)
        for row in rows:
            table.add_row(*(Text(printable(row[c])) for c in ("probe", "target", "address")))
        Console().print(table)
        click.echo(f"{len(rows)} probes")
    else:
        if fmt == "json":
            click.echo(json.dumps(rows, indent=2, default=str))
        elif fmt == "csv":
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(["probe", "target", "address"])
            for row in rows:
                writer.writerow([row["probe"], row["target"], row["address"]])
        else:
            for row in rows:
                click.echo(json.dumps(row, default=str))
    return 0
