"""User-facing errors.

Anything raised as :class:`UnlearnbenchError` is a problem with what the user asked for (an unknown
plugin, a bad option, a missing file, an unreachable hub). The CLI prints its message as one line
and exits with code 2; it never shows a traceback for these.
"""


class UnlearnbenchError(Exception):
    """A clear, one-line problem with the user's input or environment."""


class SpecError(UnlearnbenchError):
    """A spec string or option that does not fit the plugin's config."""


class HubUnavailable(UnlearnbenchError):
    """Data that is neither in the local cache nor reachable on the hub. ``reason`` is the message
    without the hint of how to pass a local file, which depends on the caller (``--data`` for a
    task, ``data=DIR`` for a benchmark)."""

    def __init__(self, reason: str, hint: str = ""):
        super().__init__(f"{reason} — {hint}" if hint else reason)
        self.reason = reason


class UnknownPluginError(UnlearnbenchError):
    """A plugin name that is not registered (the message carries 'did you mean')."""


def exception_chain(exc: BaseException):
    """``exc`` and its causes/contexts, each once (library errors are often wrapped)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
