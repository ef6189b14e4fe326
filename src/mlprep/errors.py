"""Errors a user can act on: each message says what went wrong, where, and what to do."""


class MlprepError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits with status 2."""


class PreprocessingNotFoundError(MlprepError):
    """The preprocessing file (or its folder) does not exist."""


class PreprocessingImportError(MlprepError):
    """Importing the user's module raised; the message carries the original traceback."""


class MissingDependencyError(PreprocessingImportError):
    """The user's module imports a package that is not installed."""


class PreprocessingFunctionError(MlprepError):
    """``pre_processing`` is missing or not callable."""


class InputFormatError(MlprepError):
    """The input cannot be read in the requested or detected format."""


class OutputError(MlprepError):
    """The output cannot be written where asked: it is one of the inputs, or its folder is missing."""
