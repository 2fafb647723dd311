"""xent's own errors.

Every error a user can cause (bad data, options, config or model file) is an ``XentError``
whose message says what is wrong and what to do. The command line prints that message on one
line and exits with ``exit_code``; it never shows a traceback for one of these.
"""


class XentError(Exception):
    """Base class: a problem the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class DataError(XentError):
    """The data cannot be read or used (missing file, bad column, NaN, a single class, ...)."""


class ConfigError(XentError):
    """A setting is unknown, of the wrong type or out of range."""

    exit_code = 2


class ModelFileError(XentError):
    """A model file is missing, corrupt, of another format or of a newer version."""


class DivergenceError(XentError):
    """Training produced a non-finite loss or weight."""

    exit_code = 4
