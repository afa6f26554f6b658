"""A minimal SASRec in plain Flax, with no stjax imports: the yardstick stjax's step is timed against.

Written the obvious way on purpose: `nn.MultiHeadDotProductAttention` with a causal and key-padding
mask, `nn.Dense` feed-forward, `nn.LayerNorm`, logits against the tied item table's real rows
(1..I, so no padding column is ever masked) and `optax.softmax_cross_entropy_with_integer_labels`
at every position. `pre_norm=True` is stjax's SASRec function exactly (pre-LN blocks, a final
LayerNorm, embeddings scaled by sqrt(D)): `tests/test_yardstick.py` checks that, given stjax's
weights through `from_stjax_params`, it gives stjax's loss, so timing the two compares equal work.
`pre_norm=False` is the post-LN form of the original paper and RecBole (no final LayerNorm).

Letters: B batch, T time, D features, I items (ids 1..I; 0 is padding).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class Block(nn.Module):
    num_heads: int
    inner: int
    dropout: float
    attention_dropout: float
    pre_norm: bool

    @nn.compact
    def __call__(self, x, mask, keep, deterministic):
        """x: float[B, T, D]; mask: bool[B, 1, T, T]; keep: float[B, T, 1]."""
        features = x.shape[-1]
        attention = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dropout_rate=self.attention_dropout, broadcast_dropout=False,
            deterministic=deterministic, name="attention")
        drop = nn.Dropout(self.dropout, deterministic=deterministic)

        def feed_forward(h):
            h = nn.gelu(nn.Dense(self.inner, name="up")(h))
            return nn.Dense(features, name="down")(drop(h))

        if self.pre_norm:
            normed = nn.LayerNorm(name="attention_norm")(x)
            x = x + drop(attention(normed, normed, mask=mask))
            x = x + drop(feed_forward(nn.LayerNorm(name="mlp_norm")(x)))
        else:
            x = nn.LayerNorm(name="attention_norm")(x + drop(attention(x, x, mask=mask)))
            x = nn.LayerNorm(name="mlp_norm")(x + drop(feed_forward(x)))
        return x * keep


class SASRec(nn.Module):
    num_items: int
    max_length: int = 50
    hidden: int = 64
    inner: int = 256
    num_blocks: int = 2
    num_heads: int = 2
    dropout: float = 0.2
    attention_dropout: float = 0.2
    pre_norm: bool = True

    @nn.compact
    def __call__(self, items, deterministic: bool = True):
        """items: int32[B, T] (left-padded) -> (hidden float[B, T, D], item table float[I+1, D])."""
        table = self.param("item_embedding", nn.initializers.normal(0.02), (self.num_items + 1, self.hidden))
        positions = self.param("positions", nn.initializers.normal(0.02), (self.max_length, self.hidden))
        real = items > 0
        mask = nn.combine_masks(nn.make_attention_mask(real, real), nn.make_causal_mask(items))
        keep = real[..., None].astype(jnp.float32)
        x = table[items] * jnp.sqrt(self.hidden) + positions[: items.shape[1]]
        x = nn.Dropout(self.dropout, deterministic=deterministic)(x) * keep
        for index in range(self.num_blocks):
            x = Block(self.num_heads, self.inner, self.dropout, self.attention_dropout, self.pre_norm,
                      name=f"blocks_{index}")(x, mask, keep, deterministic)
        if self.pre_norm:
            x = nn.LayerNorm(name="final_norm")(x)
        return x, table


def loss_fn(model: SASRec, params, batch, rng=None, deterministic: bool = False):
    """Mean cross-entropy over the real items at every position with a target.

    batch: items, targets int32[B, T] (target 0 = none), weights float[B]."""
    rngs = None if deterministic else {"dropout": rng}
    hidden, table = model.apply({"params": params}, batch["items"], deterministic=deterministic, rngs=rngs)
    logits = hidden @ table[1:].T  # [B, T, I]: column j is item j + 1
    targets = batch["targets"]
    per_position = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(targets - 1, 0))
    valid = (targets > 0) * batch["weights"][:, None]
    return jnp.sum(per_position * valid) / jnp.maximum(valid.sum(), 1.0)


def make_train_step(model: SASRec, learning_rate: float = 1e-3):
    """(init_fn, step): a jitted step that donates params and optimizer state."""
    tx = optax.adam(learning_rate)

    def step(params, opt_state, batch, rng):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(model, p, batch, rng))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return tx.init, jax.jit(step, donate_argnums=(0, 1))


def from_stjax_params(params, num_items: int) -> dict:
    """stjax SASRec parameters (an unboxed dict) -> this module's tree. The layouts already agree;
    stjax's table may carry rows above I (padding for an even split over devices): dropped here."""
    tree = {"item_embedding": params["item_embedding"]["embedding"][: num_items + 1],
            "positions": params["positions"]["embedding"]}
    for name, value in params.items():
        if name.startswith("blocks_"):
            block = {key: part for key, part in value.items() if key != "mlp"}
            tree[name] = block | dict(value["mlp"])  # stjax nests up/down in a FeedForward module
        elif name == "final_norm":
            tree[name] = value
    return tree
