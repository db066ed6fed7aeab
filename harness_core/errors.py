"""Error kinds: user mistakes end the command with one line; trial errors fail one trial."""


class UserError(Exception):
    """A mistake the user can fix (bad job file, missing data, busy job dir).

    The CLI prints the message as one line, without a traceback, and exits non-zero.
    """


class TrialError(Exception):
    """A trial could not run; the trial is marked failed and the search goes on."""
