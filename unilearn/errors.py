"""What a user reads when a stage stops: one paragraph naming the file (and line, key or clip) and
the problem, and an exit status: 2 for bad input (config, dataset tree, split file, checkpoint,
store or Parquet file that is missing, truncated or wrong), 1 for a run that failed (NaN loss, a
Slurm job that failed, anything unforeseen). `--debug` or `UNILEARN_DEBUG=1` adds the traceback.

Torch-free and import-light: `unilearn --help` and the Slurm launcher load it."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

EXIT_FAILED_RUN = 1
EXIT_BAD_INPUT = 2
DEBUG_ENV = "UNILEARN_DEBUG"


class InputError(ValueError):
    """Bad input the user can fix; the message names the file (and line, key or clip)."""


# The project's typed errors as "module:name". Only modules already imported are consulted: a
# type whose module was never imported cannot have been raised, and this module stays light.
BAD_INPUT = (
    "unilearn.errors:InputError",
    "unilearn.config:ConfigError",
    "unilearn.models.checkpoint:CheckpointError",
    "unilearn.data.native.common:DatasetLayoutError",
    "unilearn.data.native.common:SplitFileError",
    "unilearn.data.store:StoreError",
    "unilearn.data.decode:MediaError",
    "pyarrow.lib:ArrowException",
    "pickle:UnpicklingError",
    "builtins:FileNotFoundError",
    "builtins:NotADirectoryError",
    "builtins:IsADirectoryError",
    "builtins:PermissionError",
)
FAILED_RUN = (
    "unilearn.engine.step:NonFiniteLossError",
    "unilearn.launch.job:StageFailed",
    "unilearn.engine.scoring:TestSetIncomplete",
    "unilearn.data.preprocess:ShardFailed",
    "unilearn.data.preprocess:ShardsIncomplete",
)


def _types(names: tuple[str, ...]) -> tuple[type, ...]:
    found = []
    for name in names:
        module, _, attr = name.partition(":")
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(getattr(loaded, attr, None), type):
            found.append(getattr(loaded, attr))
    return tuple(found)


def exit_status(err: BaseException) -> int:
    """2 for bad input, 1 for a failed run (the more specific answer wins: a failed-run type
    listed first in the exception's MRO decides before a bad-input base class)."""
    failed, bad = _types(FAILED_RUN), _types(BAD_INPUT)
    for cls in type(err).__mro__:
        if cls in failed:
            return EXIT_FAILED_RUN
        if cls in bad:
            return EXIT_BAD_INPUT
    return EXIT_FAILED_RUN


def message(err: BaseException, prog: str = "unilearn") -> str:
    """`prog: bad input: <what is wrong>` (or `prog: failed: ...`) as one paragraph."""
    text = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, _types(BAD_INPUT + FAILED_RUN)):
        text = f"{type(err).__name__}: {text}"  # an unforeseen error: its type says what it is
    kind = "bad input" if exit_status(err) == EXIT_BAD_INPUT else "failed"
    return f"{prog}: {kind}: {text}"


def debug_requested(argv: list[str] | None = None) -> bool:
    """`--debug` among the arguments, or UNILEARN_DEBUG set to anything but 0/empty."""
    return "--debug" in (argv or []) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_reporting(
    fn: Callable[[], int], prog: str, debug: bool = False, stream: TextIO | None = None
) -> int:
    """`fn()`, with every exception turned into `message()` on stderr and `exit_status()`.
    KeyboardInterrupt gives 130, as a shell would; `SystemExit("text")` (a usage error) prints
    the text and gives 2; other SystemExits pass through."""
    stream = stream or sys.stderr
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=stream, flush=True)
        return 130
    except SystemExit as exit_:
        if not isinstance(exit_.code, str):
            raise
        text = " ".join(exit_.code.split())
        print(text if text.startswith(prog) else f"{prog}: bad input: {text}", file=stream)
        return EXIT_BAD_INPUT
    except Exception as err:  # the one place that turns errors into a message and a status
        if debug:
            traceback.print_exc(file=stream)
        hint = "" if debug else f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"
        status = exit_status(err)
        print(message(err, prog) + (hint if status == EXIT_FAILED_RUN else ""), file=stream)
        stream.flush()
        return status


def read_parquet(path: str | os.PathLike, what: str = "Parquet file", **kwargs: Any):
    """`pandas.read_parquet(path)` whose errors name the file: missing -> FileNotFoundError,
    truncated or not Parquet -> InputError (pyarrow's own message names no file)."""
    import pandas as pd
    import pyarrow

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return pd.read_parquet(path, **kwargs)
    except (pyarrow.ArrowException, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        detail = " ".join(str(err).split())
        raise InputError(
            f"{path}: {what} cannot be read (truncated, still being written, or not Parquet: "
            f"{detail}); write it again"
        ) from err
