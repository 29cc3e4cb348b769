"""What every command shares: logging by --verbose, SIGTERM handled as Ctrl-C, one line per error, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from ..errors import DeviceUnavailableError, MissingDependencyError, SimVOSError, describe_error
from ..io import interrupt_on_sigterm

EXIT_OK, EXIT_ERROR, EXIT_MISSING, EXIT_INTERRUPTED = 0, 2, 3, 130


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (none for options unset unless given); reflows prose, keeps indented examples."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text  # (zero-argument super() does not work inside the generator)
        return "\n\n".join(p if p.startswith(" ") else fill(p, width, indent) for p in text.split("\n\n"))


def command_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of command ``prog``: its module docstring's first paragraph above the options, the rest
    (examples, exit codes) below them."""
    about, _, more = (doc or "").partition("\n\n")
    return argparse.ArgumentParser(prog=prog, description=about, epilog=more or None, formatter_class=HelpFormatter)


def flag(parser: Any, *names: str, text: str, default: bool | None = False) -> None:
    """A boolean option that also takes ``--no-NAME``."""
    parser.add_argument(*names, action=argparse.BooleanOptionalAction, default=default, help=text)


def add_output_options(parser: Any, *, json: bool = True, progress: bool = False) -> None:
    """The switches commands share: ``--json``, ``--progress/--no-progress``, ``-v/--verbose``."""
    if json:
        flag(parser, "--json", text="print the result as JSON instead of tables")
    if progress:
        flag(parser, "--progress", default=True, text="progress lines on stderr")
    flag(parser, "-v", "--verbose", text="log library details on stderr")


def progress_printer(quiet: bool) -> Callable[[str], None]:
    """A function printing one progress line on stdout (flushed), or nothing when ``quiet`` (``--json``)."""

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    return say


def run_command(prog: str, args: argparse.Namespace, work: Callable[[argparse.Namespace], int], *,
                interrupted: str = "interrupted", missing_exit: int = EXIT_ERROR) -> int:
    """Run ``work(args)`` as command ``prog``: an error becomes one line on stderr and an exit code
    (``missing_exit`` when it cannot run here: a library or the GPU missing; ``EXIT_ERROR`` for every other
    error, a backend that failed while running included), Ctrl-C or SIGTERM prints ``interrupted``."""
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(message)s")
    interrupt_on_sigterm()
    try:
        return work(args)
    except (MissingDependencyError, DeviceUnavailableError) as exc:
        print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
        return missing_exit
    except (SimVOSError, OSError) as exc:
        print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
