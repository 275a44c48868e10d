"""genlab's command line: `genlab COMMAND --help` describes each command.

Errors a user can fix (GenlabError) print as one line and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys

from ..errors import GenlabError, ParamError



def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    # each command module has add_parser(subparsers), which sets func; listed in `genlab --help` order
    from . import bench, datasets, demo, inpaint, run_all, sample, sweep, train, visualize
    from . import colorize
    from . import eval as evaluate

    p = argparse.ArgumentParser(prog="genlab", description="A lab for generative image modelling.")
    p.add_argument("--version", action="version", version=f"genlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (train, sample, evaluate, visualize, datasets, inpaint, colorize, bench, demo, run_all, sweep):
        command.add_parser(sub)
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


def flag_worded(error: GenlabError, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The error's message; a ParamError names the flag that sets its parameter in the command that ran."""
    if not isinstance(error, ParamError):
        return str(error)
    flags = {}
    while parser is not None:  # the root parser, then the subcommand chosen at each level
        sub = None
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                sub = action.choices.get(getattr(args, action.dest, None))
            elif action.option_strings:
                flags.setdefault(action.dest, max(action.option_strings, key=len))
        parser = sub
    return error.worded(flags[error.param]) if error.param in flags else str(error)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GenlabError as e:
        print(f"genlab: error: {flag_worded(e, parser, args)}", file=sys.stderr)
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
