"""User-facing errors.

`MicnError` carries a one-paragraph message that says what was wrong, where (file, line,
key) and what would be right. The CLI prints it without a traceback and exits non-zero.
"""


class MicnError(ValueError):
    """An error caused by the user's input or configuration, with a message meant for them."""
