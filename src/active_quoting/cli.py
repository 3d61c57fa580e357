"""The ``active-quoting`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

import orjson

SAMPLE_FEED = "sample_feed.jsonl"


def _cmd_inspect(args: argparse.Namespace) -> int:
    from active_quoting.inspect_feed import inspect_file

    if args.sample == bool(args.file):
        print("active-quoting inspect: give a FILE or --sample (not both)", file=sys.stderr)
        return 2
    if args.sample:
        path = Path(str(resources.files("active_quoting.data").joinpath(SAMPLE_FEED)))
    else:
        path = Path(args.file)
    if not path.is_file():
        print(f"active-quoting inspect: no such file: {path}", file=sys.stderr)
        return 2
    if args.desync_threshold < 1:
        print("active-quoting inspect: --desync-threshold must be at least 1", file=sys.stderr)
        return 2
    summary = inspect_file(path, args.desync_threshold)
    sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="active-quoting", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "inspect",
        help="replay a recorded market feed (one raw frame per line) and print the books as JSON",
    )
    p.add_argument("file", nargs="?", help="recording: one raw frame per line (JSONL or text), optionally gzip")
    p.add_argument("--sample", action="store_true", help="inspect the bundled sample feed")
    p.add_argument("--desync-threshold", type=int, default=3, help="disagreements in a row that mark a book desynced")
    p.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
