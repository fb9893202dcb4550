"""The base class of errors that are the user's to fix (bad path, bad file, bad option).

Tools print such an error as one line and exit with code 2; any other exception is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """An error caused by input the user controls; its message is one self-contained line."""
