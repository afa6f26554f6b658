"""VAE and GAN building blocks: encoders, decoders, reparameterisation, KL, Mult-VAE
likelihood, beta annealing, generator/discriminator MLPs and their losses, WGAN-GP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Array = jax.Array


def _dense(features, name, dtype, param_dtype, names=("embed", "mlp")):
    return nn.Dense(features, dtype=dtype, param_dtype=param_dtype, name=name,
                    kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), names),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (names[1],)))


class MLP(nn.Module):
    """Dense layers with tanh/relu/... between them (none after the last)."""

    features: Sequence[int]
    activation: str = "tanh"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for index, width in enumerate(self.features):
            x = _dense(width, f"dense_{index}", self.dtype, self.param_dtype)(x)
            if index < len(self.features) - 1:
                x = getattr(jax.nn, self.activation)(x)
        return x


class VAEEncoder(nn.Module):
    """x float[B, F] -> (mean, log_variance) float[B, latent]. Mult-VAE style input handling:
    optional L2 normalisation of the input and input dropout."""

    hidden: Sequence[int]
    latent: int
    normalize_input: bool = True
    input_dropout: float = 0.0
    activation: str = "tanh"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True):
        x = x.astype(self.dtype)
        if self.normalize_input:
            x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        x = nn.Dropout(self.input_dropout)(x, deterministic=deterministic)
        h = MLP(list(self.hidden), self.activation, self.dtype, self.param_dtype, name="trunk")(x)
        h = getattr(jax.nn, self.activation)(h)
        mean = _dense(self.latent, "mean", self.dtype, self.param_dtype)(h)
        log_variance = _dense(self.latent, "log_variance", self.dtype, self.param_dtype)(h)
        return mean, log_variance


class VAEDecoder(nn.Module):
    """z float[B, latent] -> logits float[B, out] through the hidden widths."""

    hidden: Sequence[int]
    out: int
    activation: str = "tanh"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: Array) -> Array:
        return MLP([*self.hidden, self.out], self.activation, self.dtype, self.param_dtype, name="trunk")(z)


def reparameterize(key: Array, mean: Array, log_variance: Array) -> Array:
    """z = mean + exp(log_variance / 2) * ε, ε ~ N(0, I) drawn from `key`."""
    return mean + jnp.exp(0.5 * log_variance) * jax.random.normal(key, mean.shape, mean.dtype)


def gaussian_kl(mean: Array, log_variance: Array) -> Array:
    """KL(N(mean, diag exp(log_variance)) || N(0, I)) per row: float[B].

    = -1/2 Σ (1 + log σ² - μ² - σ²)
    """
    return -0.5 * jnp.sum(1.0 + log_variance - mean**2 - jnp.exp(log_variance), axis=-1)


def beta_schedule(step: Array | int, anneal_steps: int, beta_max: float = 1.0) -> Array:
    """Linear KL annealing (Liang et al., 2018): beta = min(beta_max, step / anneal_steps)."""
    return jnp.minimum(beta_max, jnp.asarray(step, jnp.float32) / max(anneal_steps, 1))


def multinomial_log_likelihood(logits: Array, counts: Array) -> Array:
    """Mult-VAE likelihood per row: Σ_i x_i log softmax(logits)_i. logits, counts: float[B, I] -> float[B]."""
    return jnp.sum(jax.nn.log_softmax(logits, axis=-1) * counts, axis=-1)


class Generator(nn.Module):
    """noise float[B, Z] -> sample float[B, out]; optional output activation (e.g. 'sigmoid')."""

    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    output_activation: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, noise: Array) -> Array:
        x = MLP([*self.hidden, self.out], self.activation, self.dtype, self.param_dtype, name="trunk")(noise)
        return getattr(jax.nn, self.output_activation)(x) if self.output_activation else x


class Discriminator(nn.Module):
    """x float[B, F] -> real-vs-fake logit float[B]. Leaky ReLU between layers (DCGAN habit)."""

    hidden: Sequence[int]
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for index, width in enumerate(self.hidden):
            x = jax.nn.leaky_relu(_dense(width, f"dense_{index}", self.dtype, self.param_dtype)(x), 0.2)
        return _dense(1, "logit", self.dtype, self.param_dtype)(x)[..., 0]


def gan_losses(real_logits: Array, fake_logits: Array, kind: str = "non_saturating") -> tuple[Array, Array]:
    """(discriminator loss, generator loss), means over the batch.

    non_saturating: D = softplus(-D(x)) + softplus(D(G(z)));  G = softplus(-D(G(z)))
    hinge:          D = relu(1 - D(x)) + relu(1 + D(G(z)));   G = -D(G(z))
    wasserstein:    D = D(G(z)) - D(x);                       G = -D(G(z))   (add the gradient penalty)
    """
    if kind == "non_saturating":
        d = jax.nn.softplus(-real_logits).mean() + jax.nn.softplus(fake_logits).mean()
        g = jax.nn.softplus(-fake_logits).mean()
    elif kind == "hinge":
        d = jax.nn.relu(1.0 - real_logits).mean() + jax.nn.relu(1.0 + fake_logits).mean()
        g = -fake_logits.mean()
    elif kind == "wasserstein":
        d = fake_logits.mean() - real_logits.mean()
        g = -fake_logits.mean()
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; expected non_saturating, hinge or wasserstein")
    return d, g


def gradient_penalty(critic: Callable[[Array], Array], real: Array, fake: Array, key: Array) -> Array:
    """WGAN-GP (Gulrajani et al., 2017): E[(‖∇_x̂ D(x̂)‖₂ - 1)²] at x̂ = ε x + (1 - ε) G(z).

    critic maps float[B, F] -> float[B]; ε ~ U(0, 1) per row from `key`.
    """
    epsilon = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    mixed = epsilon * real + (1.0 - epsilon) * fake
    gradients = jax.grad(lambda x: critic(x).sum())(mixed)
    norms = jnp.sqrt(jnp.sum(gradients.reshape(gradients.shape[0], -1) ** 2, axis=-1) + 1e-12)
    return jnp.mean((norms - 1.0) ** 2)
