"""The base of the errors phstore explains to its user.

A :class:`PhstoreError`'s message says what went wrong and what to do next. The command line
(``phstore.cli``) prints it, and the ``ValueError`` with which the Python API refuses a request
(a bad selection, too few snapshots), as one line on stderr and exits with status 1; ``-v``
adds the traceback.
"""


class PhstoreError(Exception):
    """An error whose message tells the user what to do next."""
