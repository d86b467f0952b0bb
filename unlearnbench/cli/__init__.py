"""The ``unlearnbench`` command: parse (:mod:`.parser`), call the library (:mod:`.commands`,
:mod:`.leaderboard`), render (:mod:`.render`). Nothing heavy is imported at start-up
(``unlearnbench --help`` must not import torch).

Exit codes: 0 ok; 2 bad input (one line on stderr, no traceback, nothing stored is lost); 1 a
cell failed (recorded in the store with its reason); 130 interrupted.
"""

from __future__ import annotations

import sys

from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 2
    from ..errors import UnlearnbenchError
    from .commands import COMMANDS, quiet_libraries

    try:
        with quiet_libraries(getattr(args, "quiet", False)):
            return COMMANDS[args.command](args)
    except UnlearnbenchError as e:
        print(f"unlearnbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unlearnbench: interrupted (finished cells are kept in the store)", file=sys.stderr)
        return 130
