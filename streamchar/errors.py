"""One exception type for mistakes a user can fix; the CLI prints its message as one line."""


class StreamcharError(Exception):
    """Bad input or a missing dependency: the message says what was wrong and what is accepted."""


class Interrupted(StreamcharError):
    """The user pressed Ctrl-C; what was finished is kept."""


class UnspeakableText(StreamcharError):
    """A speech engine could not speak this text as written (its words did not match the
    transcript's, or one sentence is longer than a clip): the text's fault, not the machine's."""


class TooLarge(StreamcharError):
    """An input over a size limit (a server answers 413)."""

    status = 413
