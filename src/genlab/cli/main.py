"""genlab's command line: `genlab COMMAND --help` describes each command.

Errors a user can fix (GenlabError) print as one line and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from ..errors import GenlabError

# each module has add_parser(subparsers) and sets func
COMMANDS = ["train", "sample", "eval", "visualize", "datasets", "inpaint", "bench", "demo", "run_all"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="genlab", description="A lab for generative image modelling.")
    p.add_argument("--version", action="version", version=f"genlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{name}":
                raise
            continue
        mod.add_parser(sub)
    show_defaults(p)
    return p


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append "(default: X)" to every option's help that does not state its default yet, in every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                show_defaults(child)
        elif (action.option_strings and not any(action.default is v for v in (None, False, argparse.SUPPRESS))
              and action.default != [] and action.help is not argparse.SUPPRESS
              and "default" not in (action.help or "")):
            shown = ",".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
            action.help = f"{action.help} (default: {shown})" if action.help else f"(default: {shown})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GenlabError as e:
        print(f"genlab: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine, not genlab: full disk, read-only folder, permissions
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        fix = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check its permissions or pass another --out"
        print(f"genlab: error: cannot write or read {e.filename or 'a file'}: {e.strerror}; {fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
