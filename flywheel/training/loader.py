"""Find, call and check the user's training function (spec.trainer.entryPoint).

Every problem a person can fix is a UserError naming spec.trainer.entryPoint and the fix (the run is
Failed, exit 2, no traceback as its message): the module does not import, the function is missing or
takes the wrong arguments, it returned something else than Trained or an ONNX path. An exception
raised inside the function is the user's bug: UserCodeFailed carries its type and message (bounded)
into the run's message, and the traceback goes to the log.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel import errors
from flywheel.api import trainingrun

FIELD = "spec.trainer.entryPoint"
MESSAGE_MAX = 600  # a run's message is one line in status: bounded, the log has the rest


class UserCodeFailed(Exception):
    """The training function raised: the run fails with this message."""


def add_path(trainer: trainingrun.Trainer, base: Path | None = None) -> Path | None:
    """Put spec.trainer.path on sys.path (relative paths against `base`, default the working
    directory; `flywheel run` has already made them absolute against the manifest's folder)."""
    if not trainer.path:
        return None
    folder = Path(trainer.path).expanduser()
    if not folder.is_absolute():
        folder = (base or Path.cwd()) / folder
    folder = folder.resolve()
    if not folder.is_dir():
        raise errors.UserError(
            f"spec.trainer.path {trainer.path}: no such folder ({folder}); give the folder that holds "
            "your module, relative to the manifest's folder"
        )
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


def load(trainer: trainingrun.Trainer, base: Path | None = None) -> Callable[[Any], Any]:
    """The entry point's function, imported and checked to take one argument."""
    add_path(trainer, base)
    entry = trainer.entry_point
    module_name, _, function_name = entry.partition(":")
    where = f"{FIELD} {entry}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = (
            "set spec.trainer.path to the folder that holds it (local) or build it into "
            "spec.trainer.image (Kubernetes)"
        )
        raise errors.UserError(f"{where}: cannot import {module_name} ({exc}); {hint}") from exc
    except Exception as exc:  # the module itself raised while importing
        raise errors.UserError(
            f"{where}: importing {module_name} raised {type(exc).__name__}: {_bounded(exc)}; fix the module"
        ) from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise errors.UserError(
            f"{where}: {module_name} has no {function_name}; define `def {function_name}(ctx):`"
        )
    check_signature(function, where)
    return function  # type: ignore[no-any-return]


def check_signature(function: object, where: str) -> None:
    """A callable that one positional argument (the context) can be passed to."""
    if not callable(function):
        raise errors.UserError(
            f"{where}: is a {type(function).__name__}, not a function; define `def f(ctx):`"
        )
    try:
        inspect.signature(function).bind(None)
    except TypeError as exc:
        raise errors.UserError(
            f"{where}: must take one argument, the TrainContext ({exc}); define `def f(ctx):`"
        ) from exc
    except ValueError:  # builtins without a signature: let the call decide
        pass


def call(function: Callable[[Any], Any], ctx: Any, entry: str) -> Any:
    """Run the user's function; its own exceptions become UserCodeFailed (type and message)."""
    try:
        return function(ctx)
    except errors.UserError:
        raise  # the platform's own checks (e.g. ctx.checkpoints.save) already say what to fix
    except Exception as exc:
        raise UserCodeFailed(f"{FIELD} {entry} raised {type(exc).__name__}: {_bounded(exc)}") from exc


def _bounded(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 3] + "..."
