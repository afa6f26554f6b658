"""The progress bar of long work (training steps, recommended users): rich, with a rate column."""

from __future__ import annotations


def rate_bar(description: str, total: int, unit: str, rate_format: str = ".1f", completed: int = 0,
             stderr: bool = False, transient: bool = False):
    """An unstarted rich Progress with one task: (progress, task id). The rate column shows
    `task.speed` as f"{speed:{rate_format}} {unit}/s"."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(TextColumn):
        def __init__(self):
            super().__init__("")

        def render(self, task):
            return Text(f"{task.speed:{rate_format}} {unit}/s" if task.speed else "")

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
                        TimeRemainingColumn(), console=Console(stderr=True) if stderr else None, transient=transient)
    return progress, progress.add_task(description, total=total, completed=completed)
