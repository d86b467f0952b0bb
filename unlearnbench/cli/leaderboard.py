"""The ``submit`` and ``leaderboard {verify,build}`` subcommands: their parsers (hooked into the
tree by :mod:`unlearnbench.cli.parser`) and thin handlers over :mod:`unlearnbench.leaderboard`.
Nothing heavy is imported until a handler runs.
"""

from __future__ import annotations

import json
import os
import sys

from .parser import DEFAULT_STORE


def add_parsers(sub) -> None:
    s = sub.add_parser("submit", help="run a method through a leaderboard matrix and write a submission bundle",
                       description="Run METHOD through every attack and seed a leaderboard matrix declares "
                                   "(tasks/leaderboard/<matrix>.yaml) and write a bundle: manifest.json (schema "
                                   "leaderboard/schema/submission-1.json) and scores.csv.gz (every per-item score).")
    s.add_argument("--method", required=True, help="method spec, e.g. npo or rocr,projector=none")
    s.add_argument("--matrix", default="toy-micro", help="leaderboard matrix name (default toy-micro)")
    s.add_argument("--out", required=True, help="bundle folder to write (new or empty)")
    s.add_argument("--store", default=DEFAULT_STORE, help=f"results store to run into (default ./{DEFAULT_STORE}); "
                                                          "finished cells are reused")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")

    lb = sub.add_parser("leaderboard", help="verify submission bundles and build the static leaderboard site")
    lsub = lb.add_subparsers(dest="leaderboard_command", metavar="ACTION", required=True)
    v = lsub.add_parser("verify", help="accept or refuse a bundle, one line per reason (exit 1 if refused)",
                        description="Check a submission bundle: files (no pickles, no code), schema, matrix "
                                    "completeness, provenance and versions, per-cell score hashes, aggregates "
                                    "recomputed from the per-item scores; optionally re-run K cells here.")
    v.add_argument("bundle", help="bundle folder")
    v.add_argument("--rerun", type=int, default=0, metavar="K",
                   help="re-run K sampled attack cells here (method plugin must be installed) and compare "
                        "within the matrix's tolerance")
    v.add_argument("--json", action="store_true", help="print the verdict as one JSON document")
    b = lsub.add_parser("build", help="verify every bundle and render the static site (index.html + detail pages)")
    b.add_argument("--submissions", default="leaderboard/submissions", help="folder of bundles (default leaderboard/submissions)")
    b.add_argument("--out", default="leaderboard/site", help="site folder (default leaderboard/site)")


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
    print(f"wrote {args.out}/ ({n} cells, {manifest['scores_file']['rows']} per-item scores); "
          f"check it with: unlearnbench leaderboard verify {args.out}")
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
        print(f"not listed: {folder}: {reasons[0]}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""),
              file=sys.stderr)
    print(f"listed {len(result['listed'])} verified submission(s); open {os.path.join(args.out, 'index.html')}")
    return 0
