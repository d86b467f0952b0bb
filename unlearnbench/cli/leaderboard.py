"""The ``submit`` and ``leaderboard {verify,build,held-out-hash,reaggregate}`` handlers: thin calls into
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
    controls = sum(c["kind"] == "control" for c in manifest["cells"])
    print(
        f"wrote {args.out}/ ({n} cells, {controls} of them controls, {manifest['scores_file']['rows']} "
        "per-item scores); "
        f"check it with: unlearnbench leaderboard verify {args.out}"
    )
    return 0


def cmd_leaderboard(args) -> int:
    if args.leaderboard_command == "verify":
        from ..leaderboard.verify import verify

        verdict = verify(args.bundle, rerun=args.rerun, held_out=args.held_out)
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
    if args.leaderboard_command == "held-out-hash":
        from ..leaderboard.heldout import MIN_SALT, load_held_out

        held = load_held_out(args.file)
        if len(held.salt) < MIN_SALT:
            print(
                f"warning: {args.file}: salt shorter than {MIN_SALT} characters; a short list of likely "
                "specs can be found by hashing guesses (add salt: <random hex>)",
                file=sys.stderr,
            )
        print("# paste into tasks/leaderboard/<matrix>.yaml; keep the file itself out of the repository")
        print(f'held_out: {{sha256: "{held.sha256}", count: {len(held.attacks)}}}')
        return 0
    if args.leaderboard_command == "reaggregate":
        from ..leaderboard.reaggregate import reaggregate

        for folder in args.bundles:
            print(f"{folder}: {reaggregate(folder)} cell(s) re-aggregated")
        return 0
    from ..leaderboard.site import build

    result = build(args.submissions, args.out)
    for folder, reasons in sorted(result["refused"].items()):
        print(
            f"not listed: {folder}: {reasons[0]}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""),
            file=sys.stderr,
        )
    print(f"listed {len(result['listed'])} verified submission(s); open {os.path.join(args.out, 'index.html')}")
    return 0
