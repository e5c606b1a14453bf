"""The one exception type that command-line entry points turn into a one-line error."""


class UserError(Exception):
    """Bad input from the user (config, space, resources, logs): printed as one line, exit 2."""
