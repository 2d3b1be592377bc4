"""Named process exit codes, shared by every subcommand."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: A runtime failure the operator chose not to retry (wrong AMI credentials, say).
    FAILURE = 1
    #: A wrong setting or command-line flag, or a broker that refuses the bridge's user,
    #: virtual host or permissions at start: nothing was bridged.
    CONFIG_ERROR = 2
    #: Stopped by a second signal before the graceful shutdown finished.
    FORCED = 130
