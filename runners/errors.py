"""Errors a user can cause. The command line prints them as one line and exits 2."""


class UsageError(Exception):
    """Bad input: a wrong name or value, a missing runtime. The message says what is valid."""
