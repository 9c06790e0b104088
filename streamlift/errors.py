"""The one exception library code raises for bad input (a missing file, a wrong shape, an unknown
name). It is an ordinary ValueError that says what is wrong in words and names no command-line
flag; `streamlift.cli` turns it into one line and exit status 2."""


class UserError(ValueError):
    """Bad input: say what and stop."""
