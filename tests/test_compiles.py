"""stjax.compiles counts XLA compiles per jitted function, from JAX's compile events."""

import jax
import jax.numpy as jnp

from stjax.compiles import CompileCounter, event_name


def test_counts_one_compile_per_new_signature_and_only_since_the_counter_was_made():
    def doubled(x):
        return x * 2

    def tripled(x):
        return x * 3

    first, second = jax.jit(doubled), jax.jit(tripled, donate_argnums=0)
    first(jnp.ones(3))
    compiles = CompileCounter()
    assert compiles.count(first) == 0  # its compile came before the counter
    for _ in range(5):
        first(jnp.ones(3))
    assert compiles.count(first) == 0  # the same shape reuses the compiled function
    first(jnp.ones(4))
    first(jnp.ones((2, 2)))
    second(jnp.ones(3))
    second(jnp.ones(3))
    assert (compiles.count(first), compiles.count(second)) == (2, 1)
    assert compiles.count(first, second) == 3 and compiles.count(first, first) == 2  # each name once
    assert event_name(first) == event_name(doubled) == "jit(doubled)"
