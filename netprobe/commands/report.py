"""`netprobe report` (history over result archives) and `netprobe cron` (a crontab line).

The report command only parses its options: reading, folding and showing are
the netprobe.report package's (netprobe/report/command.py).  Like the other
commands they import what they use inside the function, so that `--help`
stays fast; what commands share comes from netprobe.commands.common.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from netprobe.commands.common import RECORD_FORMATS, UserError, parse_run_options

DEFAULT_OUTPUT = "~/netprobe/results.jsonl"


def _split(values: tuple[str, ...]) -> frozenset | None:
    """Repeatable options that also take comma-separated lists; None when not given."""
    items = {item.strip() for value in values for item in value.split(",")}
    return frozenset(items) if values else None


def _parsed(option: str, parse, *args, **kwargs):
    """parse(*args), a HistoryError becoming a user error that names the option."""
    # lazy: timeutil 1 ms; --help imports every command module (test_startup)
    from netprobe.timeutil import HistoryError
    try:
        return parse(*args, **kwargs)
    except HistoryError as exc:
        raise UserError(f"{option}: {exc}") from None


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--since", metavar="WHEN", help="Only records from WHEN on: a date, an RFC 3339 date-time, "
              "or a duration ago (7d, 12h, 30m).")
@click.option("--until", metavar="WHEN", help="Only records up to WHEN (a bare date includes that whole day).")
@click.option("--label", "labels", multiple=True, metavar="TEXT",
              help="Only this vantage point; repeatable ('' matches records without a label).")
@click.option("--probe", "probes", multiple=True, metavar="KIND",
              help="Only these probe kinds; repeatable or comma-separated (default: all but control and summary).")
@click.option("--target", "targets", multiple=True, metavar="TEXT", help="Only this target; repeatable.")
@click.option("--changes", is_flag=True, help="List every moment a target's verdict changed.")
@click.option("--techniques", is_flag=True, help="Per time bucket, how many runs found each blocking technique.")
@click.option("--timeline", is_flag=True, help="Draw one row per target or group, one cell per time bucket.")
@click.option("--bucket", metavar="DURATION",
              help="Time bucket of --timeline, --techniques and --html (default: auto; --techniques: 1d).")
@click.option("--format", "fmt", type=click.Choice(RECORD_FORMATS), default=None,
              help="Stdout format (default: table on a terminal, else jsonl).")
@click.option("--group", "group", is_flag=True,
              help="One row per group (range, data center, the target file's group) in every output, "
                   "csv/json/jsonl included.")
@click.option("--ungrouped", is_flag=True,
              help="One row per target everywhere, also on a terminal and in --html (default there: groups).")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML report to FILE (then stdout only shows a view or "
                   "--format asked for explicitly).")
def report(files, since, until, labels, probes, targets, changes, techniques, timeline, bucket, fmt, group,
           ungrouped, html_file):
    """Summarise result archives (JSON lines, plain or gzip) over time.

    Default view: per target, the current verdict, since when it holds, and the
    share of each verdict over the window.  Within a run, a target's records fold
    into one observation with the worst verdict (blocked > reset > inconclusive >
    reachable); counts are numbers of such per-run observations.  On a terminal and
    in HTML, sampled range addresses, a data center's endpoints and the target
    file's groups are folded into one row each (--ungrouped keeps them apart).
    """
    # lazy: report.command 37 ms; --help imports every command module (test_startup)
    from netprobe.report import command
    from netprobe import timeutil as tu
    from netprobe.report.reading import Query

    views = [name for name, on in (("changes", changes), ("techniques", techniques), ("timeline", timeline)) if on]
    if len(views) > 1:
        raise UserError(f"choose one view: {' or '.join('--' + v for v in views)}")
    if group and ungrouped:
        raise UserError("choose one of --group and --ungrouped")
    view = views[0] if views else "state"
    if view == "timeline" and fmt not in (None, "table"):
        raise UserError("--timeline draws a picture; --format applies to the other views")
    query = Query(
        since=_parsed("--since", tu.parse_when, since) if since else None,
        until=_parsed("--until", tu.parse_when, until, end_of_day=True) if until else None,
        labels=frozenset(labels) if labels else None, probes=_split(probes),
        targets=frozenset(targets) if targets else None)
    size = _parsed("--bucket", tu.parse_duration, bucket) if bucket else None
    if size is not None and size < 60:
        raise UserError(f"--bucket: {bucket!r} is shorter than a minute")
    # Fail before reading what may be a year of records, not after.
    for path in files:
        try:
            open(path, "rb").close()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if html_file and not os.access(os.path.dirname(os.path.abspath(html_file)), os.W_OK):
        raise UserError(f"--html: cannot write into the directory of {html_file}")
    request = command.Request(files=tuple(files), query=query, view=view, fmt=fmt,
                              show=not html_file or bool(views) or fmt is not None, html_file=html_file,
                              bucket=size, grouping="group" if group else "ungrouped" if ungrouped else None)
    try:
        command.report(request, warn=lambda message: click.echo(f"netprobe: {message}", err=True))
    except tu.HistoryError as exc:
        raise UserError(f"--bucket: {exc}") from None
    except BrokenPipeError:
        # A reader like `head` left early: not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# --- cron ----------------------------------------------------------------------------------

def schedule_for(minutes: int) -> str:
    """Cron's five fields for 'every MINUTES minutes' (steps restart each hour or day)."""
    if 1 <= minutes < 60:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if minutes % 60 == 0 and minutes // 60 < 24:
        hours = minutes // 60
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if minutes == 1440:
        return "0 0 * * *"
    raise UserError(f"--every: {minutes} minutes cannot be written as a cron schedule "
                    "(use 1-59, a whole number of hours below 24, or 1440)")


def program() -> list[str]:
    """How cron should start this netprobe: the script we were started as, resolved to an
    absolute path, or this interpreter with -m (not resolved: that would leave a venv)."""

    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0)
    if name.startswith("netprobe") and not name.endswith(".py"):
        found = argv0 if os.sep in argv0 else shutil.which(argv0)
        if found and os.path.isfile(found):
            return [str(Path(found).resolve())]
    return [os.path.abspath(sys.executable), "-m", "netprobe"]


PATH_OPTIONS = {"targets_file", "ca_bundle"}
NOT_PASSED = {"output", "quiet", "fmt"}


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--every", type=click.IntRange(min=1), default=10, show_default=True, metavar="MINUTES",
              help="How often the job runs.")
@click.argument("run_options", nargs=-1, type=click.UNPROCESSED, metavar="[RUN OPTIONS]...")
def cron(every, run_options):
    """Print a crontab line that runs `netprobe run` with RUN OPTIONS (see `netprobe run --help`).

    The line runs quietly, appends to --output (default ~/netprobe/results.jsonl,
    made absolute) and holds a lock (flock -n), so that a run still going when
    the next one is due makes the next one skip instead of overlapping.  Options
    set as NETPROBE_* variables are written into the line: cron does not see them.
    """
    # lazy: hashlib 3 ms; --help imports every command module (test_startup)
    import hashlib



    # Parsed with `run`'s own options, so that a bad option fails now and not every ten minutes.
    run_params, options, sources = parse_run_options(run_options)
    output = os.path.abspath(os.path.expanduser(options["output"] or DEFAULT_OUTPUT))
    arguments = ["run"]
    for param in run_params:
        if param.name in NOT_PASSED or sources.get(param.name) not in (
                ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            continue
        flag = max(param.opts, key=len)
        values = options[param.name]
        for value in values if isinstance(values, tuple) else [values]:
            if param.is_flag:
                arguments += [flag] if value else []
                continue
            if param.name in PATH_OPTIONS:
                if not os.path.isfile(value):
                    raise UserError(f"{flag}: no such file: {value}")
                value = os.path.abspath(value)
            arguments += [flag, str(value)]
    arguments += ["--output", output, "--quiet"]
    lock = f"/tmp/netprobe-{hashlib.sha256(output.encode()).hexdigest()[:12]}.lock"
    flock = shutil.which("flock") or "flock"
    command = " ".join(shlex.quote(word) for word in [flock, "-n", lock, *program(), *arguments])
    # In a crontab line an unescaped % ends the command: escape every one.
    click.echo(f"{schedule_for(every)} {command.replace('%', chr(92) + '%')}")
    if not os.path.isdir(os.path.dirname(output)):
        click.echo(f"netprobe: note: {os.path.dirname(output)} does not exist yet; create it before the job "
                   "first runs", err=True)
    return 0
