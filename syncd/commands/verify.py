"""`syncd verify ROOT`: will oc-mirror's upload from this tree succeed?"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from syncd.exitcodes import ExitCode
from syncd.jsonout import dumps


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "verify",
        help="check that every image in a tree can be served and uploaded",
        description="Check the oc-mirror content folders (mirror_NNNNNN.tar, working-dir/) "
        "and registry storage trees (docker/registry/v2) under ROOT. A content folder is "
        "judged as oc-mirror's disk-to-mirror would run on it: the archives it picks and "
        "extracts over the cache, the images it derives from the image set config "
        "(--config) and working-dir, and whether the cache then serves each of them whole. "
        "A registry tree that is no content folder's cache has every tag checked. Exit 0 "
        "when everything holds (warnings allowed), 1 when something is missing or corrupt, "
        "2 on usage errors.",
    )
    parser.add_argument("root", type=Path, metavar="ROOT")
    parser.add_argument("--deep", action="store_true", help="also hash every blob (sha256)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--allow-sparse-index",
        action="store_true",
        help="in a registry tree checked whole, an index may name manifests the "
        "repository lacks (default: only in oc-mirror's cache, .oc-mirror/.cache); a "
        "content folder's upload copies every instance but those its config's platform "
        "filters leave out, whatever this says",
    )
    parser.add_argument(
        "--against", type=Path, metavar="SNAPSHOT", help="the tree must equal this snapshot file"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        metavar="BASE",
        help="oc-mirror's --cache-dir (holding .oc-mirror/.cache) for content folders "
        "(default: found beside the content folder)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="ISC",
        help="the ImageSetConfiguration the upload will be given (oc-mirror -c ISC); "
        "without it, the newest isc_* in the archives is used, and the report says so",
    )
    parser.add_argument(
        "--state", type=Path, help="state folder for --against (default: ROOT/.syncd)"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="hashing threads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: every command module is imported to build the parser, and verify's
    # start-up counts against hashing time on a cache of a few GB.
    from syncd.verify import VerifyOptions, verify_root  # noqa: PLC0415

    options = VerifyOptions(
        deep=args.deep,
        sparse_index=True if args.allow_sparse_index else None,
        against=args.against,
        cache_dir=args.cache_dir,
        state=args.state,
        workers=max(1, args.jobs),
        config=args.config,
    )
    report = verify_root(args.root, options)
    if args.json:
        print(dumps("verify", report.as_json()))
    else:
        print("\n".join(report.lines()))
    return int(ExitCode.OK if report.ok else ExitCode.PROBLEMS)
