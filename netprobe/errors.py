"""The one base of the errors netprobe reports to its user.

A NetprobeError is raised where the problem is found (a target file, an option's value,
an unwritable output, a state file, the RIPE Atlas API) with a message that is the whole
story for a person; the command edge (netprobe/commands/__init__.py, `LazyGroup.invoke`)
turns any of them into `netprobe: error: <message>` on one line of stderr and the exit
code below.  Exceptions that steer the program (a skipped input value, a closed
connection, a disordered history) are not NetprobeErrors: one reaching the edge is a bug.
"""

from __future__ import annotations


class NetprobeError(Exception):
    """A problem to tell the user in one line; `exit_code` 2 (ExitCode.USER_ERROR): theirs to fix."""

    exit_code = 2
