"""What every ``tools/*.py`` shares: one-line user errors with exit code 2, and overrides."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from seqdeca.errors import UserError

EXIT_USER_ERROR = 2


def run_main(fn: Callable[[], int | None]) -> int:
    """Call ``fn``; turn a :class:`UserError` into ``error: <message>`` on stderr and exit 2."""
    try:
        code = fn()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if code is None else int(code)


def split_overrides(args: Sequence[str]) -> list[str]:
    """Keep the ``a.b=value`` arguments (config overrides) from a list of leftovers."""
    bad = [a for a in args if "=" not in a or a.startswith("-")]
    if bad:
        raise UserError(
            f"unrecognised arguments {bad}: config overrides look like section.key=value"
        )
    return list(args)
