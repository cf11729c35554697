"""One exception type for mistakes a user can fix; the CLI prints its message as one line."""


class StreamcharError(Exception):
    """Bad input or a missing dependency: the message says what was wrong and what is accepted."""


class Interrupted(StreamcharError):
    """The user pressed Ctrl-C; what was finished is kept."""
