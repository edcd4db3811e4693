"""The one error type of the lockstep package."""

from __future__ import annotations


class LockstepError(RuntimeError):
    """A broken lockstep rule, raised before anything was sent or called.

    ``code`` names the class of rule ("timeout", "membership", "phase",
    "ledger", "schema", ...; docs/manual/exit-codes.md), ``exit_code`` the
    process exit status lockstep's fatal path uses for it. An uncaught
    LockstepError in a rank started with :func:`lockstep.init` ends the rank
    through the fatal path with that status, after a dump and a poison mark
    that stop its peers.
    """

    def __init__(self, message: str, code: str = "internal", exit_code: int = 1) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code

    def __reduce__(self):  # keeps code and exit_code across pickling
        return (type(self), (str(self), self.code, self.exit_code))


def error(code: str, message: str) -> LockstepError:
    """A LockstepError of ``code`` with the exit status lockstep documents for it."""
    from . import _core

    return LockstepError(f"{code}: {message}", code, _core.exit_code_for(code))
