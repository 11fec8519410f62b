"""The error for an EDGECORE_* environment variable this build cannot use.

It lives in a pure-Python module so that the CLI can name it without
importing the compiled kernels, whose import is what reads the variables
(EDGECORE_ISA, EDGECORE_NUM_THREADS): `edgecore run` reports it as one line.
"""


class EnvSettingError(ValueError):
    """An EDGECORE_* environment variable holds a value that cannot be used;
    the message names the variable, the value and what it accepts."""
