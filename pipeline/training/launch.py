"""Run open_clip_train with our model configs registered, in this process or as a torchrun worker.

Why a module of its own: ``torchrun -m open_clip_train.main`` starts fresh interpreters whose
open_clip registry lacks ``derm1m-tiny``; ``torchrun -m pipeline.training.launch ARGS`` makes each
worker register ``model_configs/`` first and then hands ``ARGS`` to the trainer unchanged.

ARGS may be one JSON list instead of flags. ``run_training`` uses that form because torchrun's
own argparse prefix-matches flags anywhere on its command line (``--logs`` is "ambiguous" with its
``--logs-specs``) even after the module name.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.training.configs import register_model_configs


def decode_argv(args: list[str]) -> list[str]:
    """Trainer flags from either plain flags or a single JSON list argument."""
    if len(args) == 1 and args[0].startswith("["):
        decoded = json.loads(args[0])
        if not isinstance(decoded, list) or not all(isinstance(a, str) for a in decoded):
            raise SystemExit("launch: the JSON argument must be a list of strings")
        return decoded
    return list(args)


@contextmanager
def restored_logging() -> Iterator[None]:
    """Undo open_clip_train's ``setup_logging`` afterwards.

    It adds root handlers and sets *every* logger to INFO: in a long-lived process that
    duplicates later log lines, keeps ``out.log`` open, and makes torch's dynamo print its
    compile report at interpreter exit.
    """
    root = logging.getLogger()
    handlers = list(root.handlers)
    root_level = root.level
    loggers = root.manager.loggerDict
    levels = {n: lg.level for n, lg in loggers.items() if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(root_level)
        for name, lg in loggers.items():
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.NOTSET))


def run_open_clip(argv: list[str]) -> int:
    """Register our configs and run ``open_clip_train.main.main(argv)``; 0 on success.

    The trainer signals refusals (e.g. an existing run folder) by returning -1 after printing
    why; that becomes 1 here.
    """
    register_model_configs()
    from open_clip_train.main import main as train_main

    with restored_logging():
        result = train_main(argv)
    return 1 if result == -1 else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m pipeline.training.launch FLAGS|JSON``."""
    return run_open_clip(decode_argv(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
