"""The command line: one module per command group, assembled here.

    probe     run, dns, tcp, targets
    report    report, cron (histories over result files)
    ooni      import ooni, export ooni
    atlas     atlas submit, atlas fetch (RIPE Atlas)
    reasons   reasons

Only click is imported at module level, so that `netprobe --version` and
`--help` stay fast for cron; each command imports what it uses.  Every common
option can also be set as NETPROBE_<OPTION> in the environment.
"""

from __future__ import annotations

import sys

import click

from netprobe import __version__
from netprobe.commands.atlas import atlas
from netprobe.commands.common import ExitCode
from netprobe.commands.ooni import export_group, import_group
from netprobe.commands.probe import dns, run, targets, tcp
from netprobe.commands.reasons import reasons
from netprobe.commands.report import cron, report
from netprobe.text import one_line


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netprobe")
def cli():
    """Measure whether, and how, Telegram is blocked from this network.

    Each probe's result is reachable, blocked, reset or inconclusive, with the
    stage and reason that decided it and the evidence it was decided from.
    """


for command in (run, dns, tcp, targets, report, cron, import_group, export_group, atlas, reasons):
    cli.add_command(command)


class Terminated(BaseException):
    """SIGTERM before (or after) the run's event loop handles it itself."""


def _terminate(signum, frame):
    raise Terminated


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
        sys.exit(ExitCode.USER_ERROR)
    except click.exceptions.Abort:
        click.echo("netprobe: interrupted by SIGINT", err=True)
        sys.exit(ExitCode.SIGINT)
    except click.ClickException as exc:
        click.echo(f"netprobe: error: {one_line(exc.format_message())}", err=True)
        sys.exit(ExitCode.USER_ERROR)
    except KeyboardInterrupt:
        click.echo("netprobe: interrupted by SIGINT", err=True)
        sys.exit(ExitCode.SIGINT)
    except Terminated:
        click.echo("netprobe: interrupted by SIGTERM", err=True)
        sys.exit(ExitCode.SIGTERM)
    sys.exit(code if isinstance(code, int) else 0)
