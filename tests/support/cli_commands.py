"""Every command of the `ttc` tree, for the tests that read each command's help."""

from __future__ import annotations

from collections.abc import Iterator

import click


def all_commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """(path of names, command) for every command and group below `group`, sorted by name."""
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))
