"""User-facing errors: raised for bad configuration or input; the CLI prints them in one line.

A ``PipelineError`` is never a bug: it says what is wrong and what to do next, and the CLI
turns it into exit code 2 instead of a traceback.
"""


class PipelineError(Exception):
    """An error the user can fix (bad params, missing input); printed without a traceback."""


class ConfigError(PipelineError):
    """A params.yaml or flag problem: names the file, the key and the fix."""
