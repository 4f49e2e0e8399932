"""The command line: one module per command group, assembled here.

    probe     run, dns, tcp, targets
    report    report, cron (histories over result files)
    ooni      import ooni, export ooni
    atlas     atlas submit, atlas fetch (RIPE Atlas)
    reasons   reasons

Only click and light modules are imported at module level, so that `netprobe
--version` and `--help` stay fast for cron; each command imports its heavy
modules inside the function (marked `# lazy:`), and a command's
module is imported only when that command runs (or --help lists it): `run`
does not pay for the options of atlas, ooni and report, a sixth of a small
sweep's start-up.  Every common option can also be set as NETPROBE_<OPTION> in
the environment.
"""

from __future__ import annotations

import importlib
import signal
import sys

import click

from netprobe import __version__
from netprobe.commands.common import ExitCode, UserError
from netprobe.errors import NetprobeError
from netprobe.text import one_line

# Command name -> (module in netprobe.commands, attribute).
COMMANDS = {
    "run": ("probe", "run"), "dns": ("probe", "dns"), "tcp": ("probe", "tcp"), "targets": ("probe", "targets"),
    "report": ("report", "report"), "cron": ("report", "cron"), "import": ("ooni", "import_group"),
    "export": ("ooni", "export_group"), "atlas": ("atlas", "atlas"), "reasons": ("reasons", "reasons"),
}


class LazyGroup(click.Group):
    """A group whose commands' modules are imported when a command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        command = self.commands.get(name)
        if command is None and name in COMMANDS:
            module, attribute = COMMANDS[name]
            command = getattr(importlib.import_module(f"netprobe.commands.{module}"), attribute)
            self.add_command(command, name)
        return command

    def invoke(self, ctx: click.Context):
        """The one place a NetprobeError (netprobe/errors.py), raised wherever the problem was
        found, becomes the user's error: one line and its exit code (2 unless it says otherwise)."""
        try:
            return super().invoke(ctx)
        except NetprobeError as exc:
            error = UserError(str(exc))
            error.exit_code = exc.exit_code
            raise error from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netprobe")
def cli():
    """Measure whether, and how, Telegram is blocked from this network.

    Each probe's result is reachable, blocked, reset or inconclusive, with the
    stage and reason that decided it and the evidence it was decided from.
    """



class Terminated(BaseException):
    """SIGTERM before (or after) the run's event loop handles it itself."""


def _terminate(signum, frame):
    raise Terminated


def main(argv=None) -> None:
    """Entry point: user errors end in one line on stderr and exit 2, never a traceback."""
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
        sys.exit(exc.exit_code if isinstance(exc, UserError) else ExitCode.USER_ERROR)
    except KeyboardInterrupt:
        click.echo("netprobe: interrupted by SIGINT", err=True)
        sys.exit(ExitCode.SIGINT)
    except Terminated:
        click.echo("netprobe: interrupted by SIGTERM", err=True)
        sys.exit(ExitCode.SIGTERM)
    sys.exit(code if isinstance(code, int) else 0)
