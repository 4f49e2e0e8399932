"""`netprobe import ooni` and `netprobe export ooni`: OONI's measurements in, netprobe's runs out.

The edges only: reading files (netprobe.bounded_input), writing records and
measurements, the one-line tallies on stderr.  The conversions are in
netprobe.interop.ooni; records go out through netprobe.output.RecordSink.
Each command imports what it uses, to keep `--help` fast.
"""

from __future__ import annotations

import os
import stat
import sys
from collections import Counter

import click

from netprobe.commands.common import RECORD_FORMATS, UserError, ooni_options
from netprobe.text import printable



# --- netprobe import ooni ----------------------------------------------------------------

@click.group(name="import")
def import_group():
    """Read measurements other tools made, as netprobe records."""


@import_group.command(name="ooni")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--format", "fmt", type=click.Choice(RECORD_FORMATS), default=None,
              help="Stdout format (default: table on a terminal, else jsonl).")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Append every record to FILE as JSON lines (a netprobe archive).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on stdout; the tally still goes to stderr.")
def import_ooni(files, fmt, output, quiet):
    """Read OONI measurements (telegram, web_connectivity) as netprobe records.

    FILE is a measurement downloaded from OONI's API (bare, or wrapped in
    raw_measurement), a list of them, or OONI's bulk JSON lines; plain or
    gzip; `-` reads stdin.  Each record's label is ooni:CC:ASN.  Lines that are
    broken, tests other than these two, and old data formats are skipped and
    counted on stderr.
    """
    # lazy: bounded_input 5 ms, interop.ooni 52 ms, output 25 ms; --help imports every command module (test_startup)
    from netprobe.bounded_input import InputError, json_values
    from netprobe.interop.ooni import Skip, measurements_in, records_from_measurement
    from netprobe.output import OutputError, RecordSink, default_format

    fmt = default_format(fmt)
    for path in files:
        if path != "-":
            _check_readable(path, json_values, InputError)  # before anything is written
    sink = RecordSink(fmt, output, quiet)
    skipped: Counter = Counter()
    counts: Counter = Counter()
    measurements = 0
    path = files[0]
    try:
        for path in files:
            for value in json_values(path, skipped):
                for measurement, meta, kind in measurements_in(value):
                    if kind:
                        count(skipped, kind)
                        continue
                    try:
                        records = records_from_measurement(measurement, meta)
                    except Skip as exc:
                        count(skipped, str(exc))
                        continue
                    measurements += 1
                    for record in records:
                        sink.write(record)
                        counts[(record["probe"], record["verdict"])] += 1
    except OutputError:
        raise  # an OSError with its own message: the command edge says it
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        sink.close()
    if sink.stdout is not None:
        _show(sink.stdout, fmt, counts)
    total = sum(counts.values())
    click.echo(f"netprobe: imported {total} record{'s' * (total != 1)} from {measurements} "
               f"measurement{'s' * (measurements != 1)}{tally(skipped)}", err=True)
    return 0


def _check_readable(path: str, json_values, InputError) -> None:
    """Open the file and read up to its first JSON value: a file that is missing, a
    directory or not JSON at all is the user's to fix, and is said before any output.
    A pipe (`<(zcat …)`) can be read only once: it is checked as it is read.  A device
    is refused: /dev/zero would be read for ever."""


    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise UserError(f"cannot read {path}: a device, not a file")
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return
    values = json_values(path, Counter())
    try:
        next(values, None)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        values.close()


def _show(writer, fmt: str, counts: Counter) -> None:
    # lazy: rich 23 ms, render 65 ms; --help imports every command module (test_startup)
    from rich.console import Console

    from netprobe.render import print_report

    if fmt == "json":
        sys.stdout.write(writer.json_text())
    elif fmt == "table":
        console = Console(highlight=False, soft_wrap=False)
        print_report(console, writer.kept, counts, "imported")


MAX_NAMED = 40  # skip kinds that name a stranger's word (a test, a version) kept apart, at most
NAMED = ("unsupported test ", "old data format ", "newer data format ")


def count(skipped: Counter, kind: str) -> None:
    """Count a skip by kind; past MAX_NAMED names, further names share one kind."""
    named = next((prefix for prefix in NAMED if kind.startswith(prefix)), None)
    if named and kind not in skipped and sum(k.startswith(NAMED) for k in skipped) >= MAX_NAMED:
        kind = named + "…"
    skipped[kind] += 1


PLURALS = {"broken line": "broken lines", "line too long": "lines too long", "unsupported test": "unsupported tests",
           "not a measurement": "not measurements", "not a netprobe record": "not netprobe records"}


def tally(skipped: Counter) -> str:
    """'; skipped K: 2 broken lines, 1 unsupported test (dash)' - remote words escaped."""

    if not skipped:
        return ""
    tests = sorted(kind.removeprefix("unsupported test ") for kind in skipped if kind.startswith("unsupported test "))
    parts = Counter()
    for kind, n in skipped.items():
        parts["unsupported test" if kind.startswith("unsupported test ") else kind] += n
    words = []
    for kind, n in sorted(parts.items(), key=lambda item: (-item[1], item[0])):
        text = f"{n} {PLURALS.get(kind, kind) if n != 1 else kind}"
        if kind == "unsupported test":
            shown = ", ".join(printable(t, 40) for t in tests[:5]) + (", …" if len(tests) > 5 else "")
            text += f" ({shown})"
        words.append(text)
    return f"; skipped {sum(skipped.values())}: " + ", ".join(words)


# --- netprobe export ooni ----------------------------------------------------------------

@click.group(name="export")
def export_group():
    """Write netprobe results in other tools' formats."""


@export_group.command(name="ooni")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@ooni_options
def export_ooni(files, probe_cc, probe_asn):
    """Write each run in netprobe result files as one OONI measurement (JSON lines).

    FILE is a netprobe archive (--output; JSON lines, plain or gzip; `-` for
    stdin), possibly holding many runs.  Each run becomes one measurement in
    OONI's base data format with test_keys shaped like OONI's telegram test, and
    netprobe's own records under test_keys.netprobe.  A run is written when its
    summary record is read (or at the end of the input).
    """
    # lazy: bounded_input 5 ms, interop.ooni 52 ms, records 18 ms; --help imports every command module (test_startup)
    from netprobe.bounded_input import InputError, json_values
    from netprobe.interop.ooni import is_record, measurement_from_run
    from netprobe.records import json_text

    for path in files:
        if path != "-":
            _check_readable(path, json_values, InputError)
    skipped: Counter = Counter()
    open_runs: dict[str, list[dict]] = {}
    written = records = 0

    def flush(run_id: str) -> None:
        nonlocal written
        sys.stdout.write(json_text(measurement_from_run(open_runs.pop(run_id), probe_cc, probe_asn)) + "\n")
        written += 1

    path = files[0]
    try:
        for path in files:
            for value in json_values(path, skipped):
                if not is_record(value):
                    skipped["not a netprobe record"] += 1
                    continue
                records += 1
                open_runs.setdefault(value["run_id"], []).append(value)
                if value["probe"] == "summary":
                    flush(value["run_id"])
        for run_id in list(open_runs):
            flush(run_id)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    click.echo(f"netprobe: exported {written} run{'s' * (written != 1)} ({records} records){tally(skipped)}",
               err=True)
    return 0
