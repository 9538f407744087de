"""Errors a user can cause. The command line prints them as one line and exits 2."""


class UsageError(Exception):
    """Bad input: a wrong name or value, a missing runtime. The message says what is valid."""


def one_line(exc: BaseException) -> str:
    """The message on one line, whatever the library below wrote."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _user_errors() -> tuple[type[BaseException], ...]:
    from zoo.registry import UnknownName  # a misspelt name: the message lists the valid ones

    return (UsageError, UnknownName)


USER_ERRORS = _user_errors()
