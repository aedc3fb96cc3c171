"""A command's checks, done once. A command runs its pipeline's checks before it imports the pipeline (torch: seconds),
so that a refusal that needs no model is said at once; the pipeline function, which a Python program calls directly
too, runs the same checks as it starts. Inside `checks_kept()` (a command's block) a check met again with the same
arguments gives what it found the first time: `generate -n 20000` named and looked at its 80,000 files twice (11 s
more before its first clip)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

Check = TypeVar("Check", bound=Callable[..., Any])

# inside checks_kept(): each check done, with its arguments (defaults filled in) and what it returned
_kept: ContextVar[list[tuple[Callable[..., Any], dict[str, Any], Any]] | None] = ContextVar("mmgen_checks_kept",
                                                                                        default=None)


@contextmanager
def checks_kept() -> Iterator[None]:
    """The block is one command: a check (`checked_once`) called again in it with the same arguments is not redone."""
    token = _kept.set([])
    try:
        yield
    finally:
        _kept.reset(token)


def checked_once(check: Check) -> Check:
    """`check`, whose result inside `checks_kept()` is kept for a later call with equal arguments; outside it (a Python
    program's call), done every time. A check that raises keeps nothing."""
    signature = inspect.signature(check)

    @functools.wraps(check)
    def once(*args: Any, **kwargs: Any) -> Any:
        kept = _kept.get()
        if kept is None:
            return check(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()  # `inputs=()` given or left out is one call
        arguments = dict(bound.arguments)
        for done, before, result in kept:
            if done is check and before == arguments:
                return result
        result = check(*args, **kwargs)
        kept.append((check, arguments, result))
        return result

    return once  # type: ignore[return-value]
