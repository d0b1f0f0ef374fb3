"""The project's one error type for user errors, and its kinds.

A `UserError` is a problem with what the user gave: a setting, a file, the data, a checkpoint,
a prompt file. Its message names the problem and the fix, on one line; the command line prints
it as `error: ...` and exits with status 2. Every other exception (a KeyError or OSError from a
bug, an XLA failure) is not caught and shows its traceback.

Each kind also derives from the built-in error it stands for (ValueError, FileNotFoundError,
FloatingPointError), so code that catches those keeps working.
"""


class UserError(Exception):
  """Bad input from the user; the message says what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
  """A setting (gin binding, macro, argument) that is invalid or does not fit the others."""


class DataError(UserError, ValueError):
  """Bad or missing task data; the message names the file (and line)."""


class MissingFileError(UserError, FileNotFoundError):
  """A file the run was told to read does not exist."""


class NotWritableError(UserError, PermissionError):
  """A directory the run must write to cannot be written."""


class CheckpointError(UserError, ValueError):
  """A checkpoint or exported prompt that cannot be read or does not fit the model."""


class TrainingError(UserError, FloatingPointError):
  """Training could not go on (e.g. a non-finite loss); what was saved before is kept."""
