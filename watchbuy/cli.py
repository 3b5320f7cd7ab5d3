"""`watchbuy COMMAND [ARGS]`: the project's one command line, thin over each package's own command.

Each command is imported only when it runs, so a serving image (models, indexer, service) never imports
the training or evaluation code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Command:
    target: str  # "module:function" taking argv (after the command name) and returning the exit status
    help: str

    def load(self) -> Callable[[list[str]], int]:
        module, _, function = self.target.partition(":")
        main: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
        return main


COMMANDS: dict[str, Command] = {
    "serve": Command("service.serve:main", "run the API with uvicorn (WATCHBUY_HOST, WATCHBUY_PORT)"),
    "build-index": Command("service.build_index:main", "embed a stream's catalogue and publish a new index version"),
    "watch": Command("service.watch.cli:main", "follow a video source; one JSON line per product segment (make watch)"),
    "watch-worker": Command("service.watch.worker:main", "run queued stream watches (a Redis consumer group member)"),
    "eval": Command("evaluation.cli:main", "evaluate a dataset through the service's request path"),
    "eval-suite": Command("evaluation.suite:main", "every dev set, in and out of domain, next to ImageNet features"),
    "models": Command("training.cli:models_main", "fetch the detector and export the embedder (make models)"),
    "train": Command("training.cli:train_main", "fine-tune an embedder on the *-train sets (make train)"),
    "adopt": Command("training.cli:adopt_main", "copy a training run's weights into models/weights/"),
    "ensemble": Command("training.cli:ensemble_main", "record an ensemble of trained weights"),
    "cohort": Command("evaluation.cohort:main", "embed training clips' proposals as the embedder's cohort"),
    "calibrate": Command("evaluation.calibrate:main", "the abstain threshold an evaluator report supports"),
    "heldout-clips": Command("training.heldout:main", "a training run's held-out clips as an evaluator dataset"),
    "synthetic-asr": Command("evaluation.synthetic_asr:main", "a dataset copy with simulated host speech"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {command.help}" for name, command in COMMANDS.items()]
    header = "usage: watchbuy COMMAND [ARGS]   (watchbuy COMMAND --help for its options)"
    return header + "\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"watchbuy: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return command.load()(args[1:])


if __name__ == "__main__":
    sys.exit(main())
