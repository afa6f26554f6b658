"""Counting how many times XLA compiled a jitted function, from JAX's own compile events.

A `jax.jit` object's private `_cache_size()` reads the size of its C++ dispatch cache, which is
not a compile count: in a long process (the CI run of the whole test suite) it read 0 for a step
that had compiled once and run 32 times. stjax therefore counts compiles: JAX records the event
`/jax/core/compile/backend_compile_duration` with `fun_name="jit(<function name>)"` for every XLA
compile, and one listener, registered when this module is first imported, tallies them by name.

    counter = CompileCounter()      # compiles from now on
    ... train_step(...) ...
    counter.count(train_step)       # how often train_step compiled since

Compiles are told apart by the function's `__name__`, so give the jitted functions you count
distinct names (stjax's are `train_step`, `eval_step`, `recommend_step`).
"""

from __future__ import annotations

import collections
import threading

import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

_counts: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()


def _listener(event: str, duration: float, **kwargs) -> None:
    if event == COMPILE_EVENT:
        with _lock:
            _counts[str(kwargs.get("fun_name", ""))] += 1


jax.monitoring.register_event_duration_secs_listener(_listener)


def event_name(function) -> str:
    """The `fun_name` JAX gives the compiles of `function` (a jitted function or the Python one)."""
    return f"jit({getattr(function, '__name__', function)})"


class CompileCounter:
    """XLA compiles since this counter was made, by function name."""

    def __init__(self):
        with _lock:
            self._start = collections.Counter(_counts)

    def count(self, *functions) -> int:
        """Compiles of these functions (each distinct name counted once) since the counter was made."""
        names = {event_name(function) for function in functions}
        with _lock:
            return sum(_counts[name] - self._start[name] for name in names)
