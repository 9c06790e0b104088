"""Errors meant for the person at the command line: the CLI prints them as one line, no traceback."""


class UserError(Exception):
    """Bad input from the user (missing file, wrong shape, unknown name): say what and stop."""
