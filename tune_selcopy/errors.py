"""The one exception type that command-line entry points turn into a one-line error."""


class UserError(Exception):
    """Bad input from the user (config, space, resources, logs): printed as one line, exit 2."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` with its whitespace collapsed to single spaces, cut to ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."
