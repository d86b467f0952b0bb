"""The ``submit`` and ``leaderboard {verify,build}`` handlers: thin calls into
:mod:`unlearnbench.leaderboard` (their parsers are in :mod:`unlearnbench.cli.parser`). Nothing heavy
is imported until a handler runs.
"""

from __future__ import annotations

import json
import os
import sys


def cmd_submit(args) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ..leaderboard.matrix import load_matrix
    from ..leaderboard.submit import submit
    from ..store import ResultStore
    from .render import RichProgress

    matrix = load_matrix(args.matrix)
    with ResultStore(args.store) as store, RichProgress(enabled=not args.quiet) as progress:
        manifest = submit(args.method, matrix, store, args.out, progress, device=args.device)
    n = len(manifest["cells"])
    print(
        f"wrote {args.out}/ ({n} cells, {manifest['scores_file']['rows']} per-item scores); "
        f"check it with: unlearnbench leaderboard verify {args.out}"
    )
    return 0


def cmd_leaderboard(args) -> int:
    if args.leaderboard_command == "verify":
        from ..leaderboard.verify import verify

        verdict = verify(args.bundle, rerun=args.rerun)
        if args.json:
            print(json.dumps(verdict.as_json(), indent=1))
        else:
            for note in verdict.notes:
                print(f"note: {note}")
            if verdict.accepted:
                print(f"accepted: {args.bundle} ({', '.join(verdict.checks)})")
            else:
                for reason in verdict.reasons:
                    print(f"refused: {reason}")
        return 0 if verdict.accepted else 1
    from ..leaderboard.site import build

    result = build(args.submissions, args.out)
    for folder, reasons in sorted(result["refused"].items()):
        print(
            f"not listed: {folder}: {reasons[0]}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""),
            file=sys.stderr,
        )
    print(f"listed {len(result['listed'])} verified submission(s); open {os.path.join(args.out, 'index.html')}")
    return 0
