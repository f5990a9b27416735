"""One exception type for mistakes a user can fix.

The CLI turns it into a single line on stderr and exit code 2, never a traceback.
Say what is wrong and how to fix it in the message.
"""


class UserError(Exception):
    exit_code = 2
