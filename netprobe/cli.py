"""Command line: argument parsing and the edges (files, terminal, signals).

Only click is imported at module level, so that `netprobe --version` and
`--help` stay fast for cron; each command imports what it uses.  Every common
option can also be set as NETPROBE_<OPTION> in the environment.
"""

from __future__ import annotations

import os
import sys

import click

from netprobe import __version__

EXIT_USER_ERROR = 2
FORMATS = ("table", "jsonl", "json", "csv")


class UserError(click.ClickException):
    exit_code = EXIT_USER_ERROR


def positive_float(ctx, param, value):
    # nan fails `> 0`; inf would mean "never" and cannot be written as JSON evidence.
    if value is not None and not 0 < value < float("inf"):
        raise click.BadParameter(f"must be a finite number of seconds > 0, got {value}")
    return value


def positive_rate(ctx, param, value):
    if value is not None and not 0 < value < float("inf"):
        raise click.BadParameter(f"must be a finite number of probes per second > 0, got {value}")
    return value


def positive_int(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter(f"must be a whole number >= 1, got {value}")
    return value


def common_options(func):
    options = [
        click.option("--targets", "targets_file", envvar="NETPROBE_TARGETS", type=click.Path(dir_okay=False), default=None,
                     help="TOML target file (default: the built-in Telegram set)."),
        click.option("--resolver", "resolvers", envvar="NETPROBE_RESOLVER", multiple=True, metavar="IP[:PORT]",
                     help="DNS resolver to ask; repeatable (default: /etc/resolv.conf)."),
        click.option("--timeout", envvar="NETPROBE_TIMEOUT", type=float, default=3.0, show_default=True, callback=positive_float,
                     help="Deadline of one probe, in seconds."),
        click.option("--deadline", envvar="NETPROBE_DEADLINE", type=float, default=None, callback=positive_float,
                     help="Deadline of the whole run, in seconds (default: derived from the plan)."),
        click.option("--concurrency", envvar="NETPROBE_CONCURRENCY", type=int, default=256, show_default=True, callback=positive_int,
                     help="Probes in flight at once."),
        click.option("--rate", envvar="NETPROBE_RATE", type=float, default=None, callback=positive_rate, metavar="N",
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
        click.option("-q", "--quiet", is_flag=True, help="Print nothing on stdout; errors still go to stderr."),
        click.option("-v", "--details", is_flag=True, envvar="NETPROBE_DETAILS",
                     help="Table: every record, not one row per probe kind and group."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netprobe")
def cli():
    """Measure whether, and how, Telegram is blocked from this network.

    Each probe's result is reachable, blocked, reset or inconclusive, with the
    stage and reason that decided it and the evidence it was decided from.
    """


def load_targets(targets_file):
    from netprobe.targets import TargetFileError, load_builtin, load_target_file
    try:
        return load_target_file(targets_file) if targets_file else load_builtin()
    except TargetFileError as exc:
        raise UserError(str(exc)) from None


def make_plan(targets, options, kinds=None, probe_controls=True):
    import random

    from netprobe.plan import Plan, PlanError, parse_probe_kinds
    from netprobe.resolvers import ResolverError, choose_resolvers
    try:
        kinds = kinds or parse_probe_kinds(options["probe_kinds"])
    except PlanError as exc:
        raise UserError(str(exc)) from None
    resolvers = ()
    try:
        if options["resolvers"] or (targets.domains and {"dns", "https", "http"} & set(kinds)):
            resolvers = choose_resolvers(options["resolvers"])
    except ResolverError as exc:
        raise UserError(str(exc)) from None
    if options["ca_bundle"]:
        check_ca_bundle(options["ca_bundle"])
    seed = options["seed"] if options["seed"] is not None else random.SystemRandom().randrange(2**32)
    return Plan(targets=targets, kinds=kinds, resolvers=resolvers, seed=seed, probe_controls=probe_controls)


def check_ca_bundle(path: str) -> None:
    import ssl

    from netprobe.probes.https import make_context
    if not os.path.isfile(path):
        raise UserError(f"--ca-bundle: no such file: {path}")
    try:
        make_context(path)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"--ca-bundle: {path} is not a usable PEM trust store ({exc})") from None


def daemon_executor():
    """The event loop's executor for blocking calls (the DNS-over-HTTPS exchange): one daemon
    thread per call.  A call the probe's deadline abandoned (a resolver that drips its answer)
    then neither delays later calls, as a small pool would, nor holds the process past the
    run deadline, as asyncio.run's executor shutdown and the interpreter's exit would."""
    import concurrent.futures
    import threading

    class DaemonThreads(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            future = concurrent.futures.Future()

            def work():
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)

            threading.Thread(target=work, name="netprobe-io", daemon=True).start()
            return future

        def shutdown(self, wait=True, *, cancel_futures=False):
            pass  # nothing to wait for: abandoned calls end with the process

    return DaemonThreads(max_workers=1)


def execute_plan(plan, options) -> int:
    """Run the plan, stream records to their sinks, print the report; the exit code."""
    import asyncio
    import dataclasses
    import signal

    from rich.console import Console

    from netprobe.engine import Runner, Settings, default_deadline
    from netprobe.output import AppendFile, OutputError, StdoutWriter
    from netprobe.records import RunInfo, encode, to_json_line
    from netprobe.render import print_report

    no_color = bool(os.environ.get("NO_COLOR"))
    fmt = options["fmt"] or ("table" if sys.stdout.isatty() else "jsonl")
    quiet = options["quiet"]
    archive = None
    if options["output"]:
        try:
            archive = AppendFile(options["output"])
        except OutputError as exc:
            raise UserError(str(exc)) from None
    stdout = None if quiet else StdoutWriter(fmt)
    run = RunInfo(label=options["label"])
    total = len(plan)
    settings = Settings(timeout=options["timeout"], concurrency=options["concurrency"], rate=options["rate"],
                        ca_bundle=options["ca_bundle"])
    settings = dataclasses.replace(settings, deadline=options["deadline"]
                                   or default_deadline(total, settings, plan.stages))
    err_console = Console(stderr=True, no_color=no_color, highlight=False)
    progress = None
    if err_console.is_terminal and not quiet and not no_color:
        from rich.progress import Progress
        progress = Progress(console=err_console, transient=True)
        progress_task = progress.add_task("probing", total=total)
        progress.start()
    failure: list[str] = []

    summary: list[dict] = []

    def emit(result):
        record = encode(result, run)
        if result.probe == "summary":
            summary.append(record)
        if archive is not None and not failure:
            try:
                archive.append(to_json_line(record))
            except OutputError as exc:
                failure.append(str(exc))
                main_task.cancel()
        if stdout is not None:
            stdout.write(record)
        if progress is not None:
            progress.advance(progress_task)

    received: list[int] = []
    runner = Runner(plan, settings, emit)

    async def main():
        nonlocal main_task
        main_task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(daemon_executor())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda s=sig: (received.append(s), main_task.cancel()))
        return await runner.run()

    main_task = None
    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass
    finally:
        if progress is not None:
            progress.stop()
        if archive is not None:
            archive.close()
    if failure:
        raise UserError(failure[0])
    outcome = runner.outcome
    if not outcome.interrupted:
        received.clear()  # a signal after the run had finished interrupted nothing
    notes = []
    if outcome.concurrency_note:
        notes.append(outcome.concurrency_note)
        click.echo(f"netprobe: {outcome.concurrency_note}", err=True)
    if received:
        notes.append(f"interrupted: only the probes that finished are shown ({outcome.not_started} not started)")
    elif outcome.cut_by_deadline or outcome.not_started:
        notes.append(f"run deadline reached: {outcome.cut_by_deadline} probes cut short, "
                     f"{outcome.not_started} not started")
    if stdout is not None:
        out_console = Console(no_color=no_color, highlight=False, soft_wrap=False)
        if fmt == "table":
            print_report(out_console, stdout.kept, outcome.counts, outcome.vantage, notes, outcome.findings,
                         details=options["details"], summary=summary[0] if summary else None)
        else:
            if fmt == "json":
                sys.stdout.write(stdout.json_text())
            print_report(err_console, [], outcome.counts, outcome.vantage, notes, outcome.findings,
                         summary=summary[0] if summary else None)
    if received:
        name = signal.Signals(received[0]).name
        if archive is not None:
            kept = f"; finished results were kept in {one_line(options['output'])}"
        else:
            kept = "; finished results were shown" if stdout is not None else ""
        click.echo(f"netprobe: interrupted by {name}{kept}", err=True)
        return 128 + received[0]
    return 0


@cli.command()
@common_options
def run(**options):
    """Run every probe over a target set (default: the built-in Telegram set)."""
    targets = load_targets(options["targets_file"])
    return execute_plan(make_plan(targets, options), options)


@cli.command()
@click.argument("names", nargs=-1, required=True)
@common_options
def dns(names, **options):
    """Ask the resolvers for NAME's A and AAAA records and judge the answers.

    Answers are judged against the networks of --targets (default: Telegram's).
    """
    from dataclasses import replace

    from netprobe.targets import Domain, normalize_domain
    targets = load_targets(options["targets_file"])
    try:
        domains = tuple(dict.fromkeys(Domain(normalize_domain(n)) for n in names))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    adhoc = replace(targets, domains=domains, endpoints=(), ranges=())
    plan = make_plan(adhoc, options, kinds=("dns",), probe_controls=bool(options["targets_file"]))
    return execute_plan(plan, options)


@cli.command()
@click.argument("endpoints", nargs=-1, required=True, metavar="IP:PORT...")
@common_options
def tcp(endpoints, **options):
    """Connect to each IP:PORT (IPv6 as [ADDR]:PORT) and judge the outcome.

    Controls are probed first only when --targets names a file.
    """
    from dataclasses import replace

    from netprobe.addresses import AddressError, parse_endpoint
    from netprobe.targets import EndpointTarget
    targets = load_targets(options["targets_file"])
    try:
        parsed = tuple(dict.fromkeys(EndpointTarget(parse_endpoint(e)) for e in endpoints))
    except AddressError as exc:
        raise UserError(f"{exc}") from None
    adhoc = replace(targets, domains=(), endpoints=parsed, ranges=())
    plan = make_plan(adhoc, options, kinds=("tcp",), probe_controls=bool(options["targets_file"]))
    return execute_plan(plan, options)


@cli.command()
@common_options
def targets(**options):
    """Show the expanded plan: every probe a run would perform, without probing."""
    target_set = load_targets(options["targets_file"])
    plan = make_plan(target_set, options)
    fmt = options["fmt"] or ("table" if sys.stdout.isatty() else "jsonl")
    rows = [{"probe": t.kind, "target": t.target,
             "address": str(t.endpoint or t.resolver or ""), **{k: v for k, v in t.context}}
            for t in [*plan.controls(), *plan.tasks()]]
    if options["quiet"]:
        return 0
    if fmt == "table":
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        from netprobe.render import printable
        # A title string would be parsed as markup: the file's name is text, never styling.
        table = Table(title=Text(f"plan for {printable(target_set.name)} (seed {plan.seed})"))
        for column in ("probe", "target", "address"):
            table.add_column(column)
        for row in rows:
            table.add_row(*(Text(printable(row[c])) for c in ("probe", "target", "address")))
        Console(no_color=bool(os.environ.get("NO_COLOR"))).print(table)
        click.echo(f"{len(rows)} probes")
    else:
        import json
        if fmt == "json":
            click.echo(json.dumps(rows, indent=2, default=str))
        elif fmt == "csv":
            import csv
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(["probe", "target", "address"])
            for row in rows:
                writer.writerow([row["probe"], row["target"], row["address"]])
        else:
            for row in rows:
                click.echo(json.dumps(row, default=str))
    return 0


from netprobe.report_cli import cron, report  # noqa: E402 - report_cli imports this module lazily
from netprobe.atlas_cli import atlas  # noqa: E402 - atlas_cli imports this module

cli.add_command(report)
cli.add_command(atlas)
cli.add_command(cron)


class Terminated(BaseException):
    """SIGTERM before (or after) the run's event loop handles it itself."""


def _terminate(signum, frame):
    raise Terminated


def one_line(text: str) -> str:
    """A message as one line of inert text: whitespace runs become one space, and
    other control characters (an ESC from a file name or a file's content) are
    shown as \\xNN, never sent to the terminal raw."""
    text = " ".join(text.split())
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
                   for ch in text)


def main(argv=None) -> None:
    """Entry point: user errors end in one line on stderr and exit 2, never a traceback."""
    import signal
    # Until the run's event loop takes over SIGTERM (and after it gives it back), end
    # with the same message and exit status as during a run, not the default silent death.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        code = cli.main(args=argv, prog_name="netprobe", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.exceptions.Abort:
        click.echo("netprobe: interrupted by SIGINT", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"netprobe: error: {one_line(exc.format_message())}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        click.echo("netprobe: interrupted by SIGINT", err=True)
        sys.exit(130)
    except Terminated:
        click.echo("netprobe: interrupted by SIGTERM", err=True)
        sys.exit(128 + signal.SIGTERM)
    sys.exit(code if isinstance(code, int) else 0)
