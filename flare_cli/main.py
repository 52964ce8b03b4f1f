"""The `flare` command: the operator's entry point to Flare+."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# Each module registers its own sub-commands; a service's commands live beside its concerns.
COMMAND_MODULES = [
    "flare_cli.commands.stack",
    "flare_cli.commands.config",
    "flare_cli.commands.ingest",
    "flare_cli.commands.data",
    "flare_cli.commands.evaluate",
    "flare_cli.commands.train",
    "flare_cli.commands.validate",
    "flare_cli.commands.demo",
    "flare_cli.commands.predictor",
    "flare_cli.commands.models",
    "flare_cli.commands.contract",
    "flare_cli.commands.skill",
    "flare_cli.commands.export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flare", description="Flare+ solar-flare forecasting: operator commands")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(name).register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from shared.logging import configure_logging
    from shared.settings import ConfigError

    configure_logging("cli", json_lines=False, level="debug" if args.verbose else "warning", on_first_use=True)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"flare: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flare: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
