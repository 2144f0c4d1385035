"""The exception hierarchy of the whole project.

Every error a user can cause or meet is an :class:`OarError`.  Each class carries the
exit code that every command returns for it, so that scripts can tell the classes of
failure apart; the table is documented in each command's ``--help`` and in the README.
"""


class OarError(Exception):
    """Root of every error raised on purpose by this project."""

    exit_code = 1
    #: short name of the class of error, as listed in the exit code tables
    kind = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(OarError):
    """Unknown option, missing argument, malformed value on the command line."""

    exit_code = 2
    kind = "usage"


class ConfigError(OarError):
    """oar.conf is unreadable, malformed, or holds a value of the wrong type."""

    exit_code = 3
    kind = "configuration"


class DatabaseError(OarError):
    """The database cannot be reached, or its schema is missing or outdated."""

    exit_code = 4
    kind = "database"


class ExpressionError(OarError):
    """A property expression (``-p``, ``--sql``, ``{...}``) is malformed or refused."""

    exit_code = 5
    kind = "expression"


class NotFoundError(OarError):
    """A named object (resource, property, queue, job, host) does not exist."""

    exit_code = 6
    kind = "not found"


class ConflictError(OarError):
    """The request contradicts the current state (already exists, wrong state...)."""

    exit_code = 7
    kind = "conflict"


class PermissionDeniedError(OarError):
    """The caller may not do this."""

    exit_code = 8
    kind = "permission"


class ServerUnreachableError(OarError):
    """oar-server did not take a notification (it is not running or not reachable)."""

    exit_code = 9
    kind = "server"


class AdmissionRefused(OarError):
    """An admission rule refused the submission (or failed)."""

    exit_code = 10
    kind = "admission"


class FeatureDisabledError(OarError):
    """The feature is turned off in oar.conf."""

    exit_code = 11
    kind = "disabled"


#: every error class, in exit code order, for help texts and documentation
ERROR_CLASSES = (
    UsageError,
    ConfigError,
    DatabaseError,
    ExpressionError,
    NotFoundError,
    ConflictError,
    PermissionDeniedError,
    ServerUnreachableError,
    AdmissionRefused,
    FeatureDisabledError,
)
