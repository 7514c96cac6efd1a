"""The one error the VM tooling reports to its user as a single line."""


class VmError(Exception):
    """Something the user can fix (an unknown kernel, a missing tool, a failed download):
    the command line prints its text and exits, without a traceback."""
