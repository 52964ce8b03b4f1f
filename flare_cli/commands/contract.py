"""`flare contract [--check]`: write (or check) the topics' AsyncAPI document and the message schema snapshots."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "contract", help="write docs/asyncapi.json and docs/schemas/ from the message models (--check: only compare)",
        description="Generates the AsyncAPI 3.0 document of the topics and each message's JSON Schema snapshot for "
                    "its schema_version. Refuses, naming the field, when a message changed incompatibly without a "
                    "higher schema_version.",
    )
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file is stale or a change breaks")
    parser.set_defaults(handler=cmd_contract)


def cmd_contract(args: argparse.Namespace) -> int:
    from shared import contract

    breaking = contract.evolution_problems()
    for problem in breaking:
        print(f"incompatible without a new schema_version: {problem}", file=sys.stderr)
    stale = contract.stale_files()
    if args.check or breaking:
        for path in stale:
            print(f"stale: {path.relative_to(contract.DOCS_DIR.parent)} (run `flare contract`)", file=sys.stderr)
        if not (stale or breaking):
            print(f"contract up to date: {contract.DOCUMENT_PATH}")
        return 1 if stale or breaking else 0
    for path, text in contract.expected_files().items():
        if path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(contract.DOCS_DIR.parent)}")
    if not stale:
        print(f"contract up to date: {contract.DOCUMENT_PATH}")
    return 0
