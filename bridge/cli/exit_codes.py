"""Named process exit codes, shared by every subcommand."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: A runtime failure the operator chose not to retry (wrong AMI credentials, broker refused us).
    FAILURE = 1
    #: A wrong setting or command-line flag: nothing was started.
    CONFIG_ERROR = 2
    #: Stopped by a second signal before the graceful shutdown finished.
    FORCED = 130
