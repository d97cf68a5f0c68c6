"""The one error type for mistakes a user can make, and internal errors.

Three kinds of failure travel on three channels:

* what the machine models (a fault, a signal, running out of frames) is a
  value or an event, never a Python exception;
* a user's mistake (bad configuration, malformed trace or program, an
  implementation breaking the interface) raises :class:`UserError`, whose
  message names the key or value and the fix;
* a broken internal invariant raises :class:`InternalError`, naming the
  function and the value.

A kernel under check that misuses the hardware raises :class:`PortError`
inside its own call; the checks turn that into a violation of the kernel.
"""


class UserError(Exception):
    """A mistake in input the user controls; the message says what and how to fix it."""


class ConfigError(UserError):
    """A configuration value is missing, of the wrong type or impossible."""


class AssemblyError(UserError):
    """A program's assembly text cannot be assembled."""


class InternalError(AssertionError):
    """pagingcheck itself broke an internal rule: a bug in pagingcheck, not in the input."""


class PortError(Exception):
    """A kernel broke a rule of the hardware port: the message names the call and the rule.

    It is the checked kernel's fault, so the checks report it as a violation
    (``port_rules``), never as pagingcheck's error or the user's input error.
    """


#: The most characters of a value a message quotes.
QUOTE = 80


def quote(value: object) -> str:
    """``repr(value)``, on one line and cut short: messages never echo a huge value whole."""
    return shorten(repr(value))


def shorten(text: str, limit: int = QUOTE) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
