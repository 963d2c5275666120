"""User-facing errors.

Every error a user can cause (bad YAML, unknown plugin, bad data) is a :class:`QfError`: the CLI prints
its message on one line per problem and exits with code 2, never a traceback.
"""

from __future__ import annotations


class QfError(Exception):
    """An error caused by input the user controls; printed without a traceback, exit code 2.

    Example::

        raise QfError("experiments/x.yaml:3: name: must not be empty")
    """

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class ConfigError(QfError):
    """One or more problems in an experiment file, each already formatted as ``file:line: path: msg``."""


class DataError(QfError):
    """Bad market data: the message names the source, symbol and date."""


class PluginError(QfError):
    """A plugin could not be loaded or registered (duplicate names, misspelled hooks, bad records)."""


class ReportWriteError(QfError):
    """The report could not be written once the run had finished (disk full, folder removed, ...).

    Exit code 1, not 2: the input was fine, the machine was not. Its message names the path and the cause.

    Example::

        raise ReportWriteError("reports/x/run1: the report could not be written: No space left on device")
    """

    exit_code = 1
