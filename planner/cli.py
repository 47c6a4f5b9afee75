"""The `ttc` command line: thin wrappers that parse options, call the library and print or write.

Command modules live in `planner/commands/`; they import only click and light planner modules at
import time, so `ttc --help` never loads torch, transformers or altair.
"""

from __future__ import annotations

import importlib

import click

from planner import __version__

# Each module exposes COMMANDS: a list of click commands or groups added to the root group.
_COMMAND_MODULES = [
    "planner.commands.samples",
    "planner.commands.curves",
    "planner.commands.plan",
    "planner.commands.policy",
    "planner.commands.whatif",
    "planner.commands.cost",
    "planner.commands.allocate",
    "planner.commands.report",
    "planner.commands.profile",
    "planner.commands.demo",
    "planner.commands.testbed",
    "planner.commands.serve",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ttc")
def main() -> None:
    """ttc: plan test-time compute for LLMs.

    \b
    Measure accuracy-vs-compute curves per strategy and difficulty bin, pick the compute-optimal
    strategy per bin, and answer "bigger model or more test-time compute?".

    \b
    Example:
      ttc samples import dump.jsonl --out runs/qwen --id-field idx --answers-field pred \\
          --correct-field score --scores-field pred_score --level-field level \\
          --score-transform sigmoid
      ttc curves runs/qwen --out runs/qwen-profile
      ttc plan runs/qwen-profile --out runs/qwen-plan --bin-by level
    """


for _name in _COMMAND_MODULES:
    for _cmd in importlib.import_module(_name).COMMANDS:
        main.add_command(_cmd)


if __name__ == "__main__":  # pragma: no cover
    main()
