"""LSTM and GRU layers over [batch, time, features] with padding masks, scanned with nn.scan.

Gate equations (textbook form, as in PyTorch's nn.LSTM / nn.GRU, no peepholes):

  LSTM: i = σ(x W_i + h U_i + b_i)        f = σ(x W_f + h U_f + b_f + forget_bias)
        g = tanh(x W_g + h U_g + b_g)     o = σ(x W_o + h U_o + b_o)
        c' = f ⊙ c + i ⊙ g               h' = o ⊙ tanh(c')
  GRU:  r = σ(x W_r + h U_r + b_r)        z = σ(x W_z + h U_z + b_z)
        n = tanh(x W_n + b_n + r ⊙ (h U_n + b_hn))     h' = (1 - z) ⊙ n + z ⊙ h

The input projections of all steps are one matmul before the scan; the scan carries only
the recurrent part. On a padded step (mask False) the carry is frozen and the output is 0,
so any padding pattern (left or right) gives the same outputs at real steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Array = jax.Array


def _partitioned(init: Callable, names: tuple) -> Callable:
    return nn.with_logical_partitioning(init, names)


class _Step(nn.Module):
    """One recurrent step on precomputed input projections; owns the recurrent weights."""

    cell: str
    hidden: int
    forget_bias: float
    dtype: Dtype
    param_dtype: Dtype

    @nn.compact
    def __call__(self, carry, inputs):
        projected, mask = inputs  # [B, G*H], [B]
        gates = 4 if self.cell == "lstm" else 3
        recurrent = self.param("recurrent_kernel", _partitioned(nn.initializers.orthogonal(), ("hidden", "mlp")),
                               (self.hidden, gates * self.hidden), self.param_dtype)
        recurrent = recurrent.astype(self.dtype)
        keep = mask[:, None]
        if self.cell == "lstm":
            h, c = carry
            z = projected + h @ recurrent
            i, f, g, o = jnp.split(z, 4, axis=-1)
            new_c = jax.nn.sigmoid(f + self.forget_bias) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
            new_carry = (jnp.where(keep, new_h, h), jnp.where(keep, new_c, c))
            out = jnp.where(keep, new_h, 0)
        else:
            (h,) = carry
            hidden_bias = self.param("recurrent_bias", _partitioned(nn.initializers.zeros, ("mlp",)),
                                     (self.hidden,), self.param_dtype).astype(self.dtype)
            x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
            h_r, h_z, h_n = jnp.split(h @ recurrent, 3, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * (h_n + hidden_bias))
            new_h = (1 - z) * n + z * h
            new_carry = (jnp.where(keep, new_h, h),)
            out = jnp.where(keep, new_h, 0)
        return new_carry, out


class RecurrentLayer(nn.Module):
    """One direction of an LSTM or GRU over a sequence.

    Attributes:
      cell: 'lstm' or 'gru'.
      hidden: size H of the hidden state.
      forget_bias: added to the LSTM forget gate pre-activation (1.0 is a common choice).
      reverse: run from the last step to the first.
      scan: nn.scan over time (compiles once whatever T); False unrolls a Python loop.
    """

    cell: str = "lstm"
    hidden: int = 64
    forget_bias: float = 0.0
    reverse: bool = False
    scan: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array, mask: Array | None = None, initial_carry=None):
        """inputs: float[B, T, F]; mask: bool[B, T] (True = real step).

        Returns (outputs float[B, T, H] with zeros at padded steps, final carry): the carry
        is (h, c) for LSTM and (h,) for GRU, each float[B, H], the state after the last
        real step.
        """
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {self.cell!r}")
        batch, time = inputs.shape[:2]
        if mask is None:
            mask = jnp.ones((batch, time), dtype=bool)
        gates = 4 if self.cell == "lstm" else 3
        projected = nn.DenseGeneral(
            gates * self.hidden, dtype=self.dtype, param_dtype=self.param_dtype, name="input_projection",
            kernel_init=_partitioned(nn.initializers.lecun_normal(), ("embed", "mlp")),
            bias_init=_partitioned(nn.initializers.zeros, ("mlp",)),
        )(inputs.astype(self.dtype))  # [B, T, G*H]
        if initial_carry is None:
            zeros = jnp.zeros((batch, self.hidden), self.dtype)
            initial_carry = (zeros, zeros) if self.cell == "lstm" else (zeros,)
        if self.reverse:
            projected, mask = projected[:, ::-1], mask[:, ::-1]
        kwargs = dict(cell=self.cell, hidden=self.hidden, forget_bias=self.forget_bias,
                      dtype=self.dtype, param_dtype=self.param_dtype, name="step")
        if self.scan:
            step = nn.scan(_Step, variable_broadcast="params", split_rngs={"params": False},
                           in_axes=1, out_axes=1)(**kwargs)
            carry, outputs = step(initial_carry, (projected, mask))
        else:
            step = _Step(**kwargs)
            carry, outputs = initial_carry, []
            for t in range(time):
                carry, out = step(carry, (projected[:, t], mask[:, t]))
                outputs.append(out)
            outputs = jnp.stack(outputs, axis=1)
        if self.reverse:
            outputs = outputs[:, ::-1]
        return outputs, carry


class RNN(nn.Module):
    """Stacked, optionally bidirectional LSTM/GRU. See `RecurrentLayer` for the equations.

    Attributes:
      num_layers: stacked layers; layer k+1 reads the outputs of layer k.
      bidirectional: each layer runs both directions and concatenates (features 2H).
      dropout: between layers (needs a 'dropout' rng when not deterministic).
    """

    cell: str = "lstm"
    hidden: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    forget_bias: float = 0.0
    dropout: float = 0.0
    scan: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array, mask: Array | None = None, deterministic: bool = True):
        """inputs: float[B, T, F]; mask: bool[B, T].

        Returns (outputs float[B, T, H or 2H], final_states): final_states is a list with
        one entry per layer, each a carry (forward) or a (forward, backward) pair of carries.
        """
        x = inputs
        finals = []
        for layer in range(self.num_layers):
            kwargs = dict(cell=self.cell, hidden=self.hidden, forget_bias=self.forget_bias, scan=self.scan,
                          dtype=self.dtype, param_dtype=self.param_dtype)
            forward, forward_carry = RecurrentLayer(**kwargs, name=f"layer_{layer}_forward")(x, mask)
            if self.bidirectional:
                backward, backward_carry = RecurrentLayer(**kwargs, reverse=True, name=f"layer_{layer}_backward")(x, mask)
                x = jnp.concatenate([forward, backward], axis=-1)
                finals.append((forward_carry, backward_carry))
            else:
                x = forward
                finals.append(forward_carry)
            if self.dropout and layer < self.num_layers - 1:
                x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        return x, finals
