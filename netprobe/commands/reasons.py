"""`netprobe reasons`: the vocabulary of the records, for people and tools."""

from __future__ import annotations

import csv
import json
import sys

import click

from netprobe.commands.common import RECORD_FORMATS


@click.command()
@click.option("--format", "fmt", type=click.Choice(RECORD_FORMATS), default=None,
              help="Output format (default: table on a terminal, else json).")
def reasons(fmt):
    """Every reason a record can carry, with its verdict and what it means."""
    # lazy: classify 14 ms, output 25 ms; --help imports every command module (test_startup)
    from netprobe.classify import REASONS
    from netprobe.output import default_format

    rows = [{"reason": reason, "verdict": verdict, "meaning": meaning} for reason, (verdict, meaning) in REASONS.items()]
    fmt = default_format(fmt, pipe="json")
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "jsonl":
        for row in rows:
            click.echo(json.dumps(row))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        # lazy: rich 23 ms, render 65 ms; --help imports every command module (test_startup)
        from rich.console import Console
        from rich.table import Table

        from netprobe.render import VERDICT_STYLES
        table = Table(header_style="bold")
        for column in ("reason", "verdict", "meaning"):
            table.add_column(column, no_wrap=column != "meaning")
        for row in rows:
            table.add_row(row["reason"], f"[{VERDICT_STYLES[row['verdict']]}]{row['verdict']}[/]", row["meaning"])
        Console().print(table)
