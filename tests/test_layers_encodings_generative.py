"""Encodings and VAE/GAN blocks against closed forms, NumPy and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import meta
from jax.test_util import check_grads

from stjax.data.geo import haversine_km
from stjax.layers import (
    CalendarEmbedding,
    Discriminator,
    DistanceBucketEmbedding,
    FunctionalTimeEncoding,
    Generator,
    GeoCellEmbedding,
    Time2Vec,
    VAEDecoder,
    VAEEncoder,
    beta_schedule,
    distance_buckets,
    gan_losses,
    gaussian_kl,
    gradient_penalty,
    haversine,
    hour_and_weekday,
    multinomial_log_likelihood,
    reparameterize,
    sinusoidal_latlon,
)


def test_time2vec_formula():
    layer = Time2Vec(7)
    times = np.array([[0.0, 1.5, 3.0]], np.float32)
    params = meta.unbox(layer.init(jax.random.key(0), times))["params"]
    out = layer.apply({"params": params}, times)
    z = times[..., None] * params["frequency"] + params["phase"]
    np.testing.assert_allclose(out[..., 0], z[..., 0], atol=1e-6)
    np.testing.assert_allclose(out[..., 1:], np.sin(z[..., 1:]), atol=1e-6)


def test_functional_time_encoding_formula():
    layer = FunctionalTimeEncoding(5)
    dt = np.array([0.0, 10.0, 1e6], np.float32)
    params = meta.unbox(layer.init(jax.random.key(0), dt))["params"]
    expected = np.cos(dt[:, None] * (1 / 10 ** np.linspace(0, 9, 5)))
    np.testing.assert_allclose(layer.apply({"params": params}, dt), expected, atol=1e-5)


def test_hour_and_weekday():
    # 2012-04-03 18:00:09 UTC was a Tuesday.
    hour, weekday = hour_and_weekday(jnp.asarray([1333476009]))
    assert int(hour[0]) == 18 and int(weekday[0]) == 1
    hour, weekday = hour_and_weekday(jnp.asarray([1333476009]), utc_offset_minutes=-240)
    assert int(hour[0]) == 14
    layer = CalendarEmbedding(7)
    params = layer.init(jax.random.key(0), jnp.asarray([0]))
    assert layer.apply(params, jnp.asarray([[1333476009, 0]])).shape == (1, 2, 7)


def test_haversine_equals_numpy_and_known_distance():
    rng = np.random.default_rng(0)
    a = rng.uniform(-80, 80, (4, 13))
    b = rng.uniform(-170, 170, (4, 13))
    np.testing.assert_allclose(haversine(a[0], b[0], a[1], b[1]), haversine_km(a[0], b[0], a[1], b[1]), rtol=1e-4)
    # New York -> Los Angeles is about 3936 km.
    assert float(haversine(40.7128, -74.0060, 34.0522, -118.2437)) == pytest.approx(3936, abs=10)


def test_distance_buckets_and_embeddings():
    np.testing.assert_array_equal(distance_buckets(jnp.asarray([0.1, 0.5, 3.0, 5000.0])), [0, 1, 3, 12])
    layer = DistanceBucketEmbedding(7)
    params = layer.init(jax.random.key(0), jnp.zeros(3))
    assert layer.apply(params, jnp.asarray([0.1, 3.0])).shape == (2, 7)
    cells = GeoCellEmbedding(11, 7)
    params = cells.init(jax.random.key(0), jnp.zeros(2, jnp.int32))
    out = cells.apply(params, jnp.asarray([0, 3]))
    np.testing.assert_array_equal(out[0], 0.0)
    assert np.abs(out[1]).sum() > 0


def test_sinusoidal_latlon_nearby_points_are_close():
    codes = sinusoidal_latlon(jnp.asarray([40.0, 40.001, -33.0]), jnp.asarray([-74.0, -74.001, 151.0]), 16)
    assert codes.shape == (3, 16)
    assert float(jnp.linalg.norm(codes[0] - codes[1])) < float(jnp.linalg.norm(codes[0] - codes[2]))


def test_gaussian_kl_equals_closed_form_and_monte_carlo():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(3, 7))
    log_var = rng.normal(size=(3, 7)) * 0.3
    sigma = np.exp(0.5 * log_var)
    closed = np.sum(np.log(1 / sigma) + (sigma**2 + mean**2) / 2 - 0.5, axis=1)
    np.testing.assert_allclose(gaussian_kl(jnp.asarray(mean), jnp.asarray(log_var)), closed, rtol=1e-5)
    # Monte Carlo: E_q[log q(z) - log p(z)] with z from the reparameterisation.
    z = np.asarray(reparameterize(jax.random.key(0), jnp.broadcast_to(mean[0], (200_000, 7)),
                                  jnp.broadcast_to(log_var[0], (200_000, 7))))
    log_q = -0.5 * (((z - mean[0]) / sigma[0]) ** 2 + log_var[0] + np.log(2 * np.pi)).sum(1)
    log_p = -0.5 * (z**2 + np.log(2 * np.pi)).sum(1)
    assert np.mean(log_q - log_p) == pytest.approx(closed[0], abs=0.05)


def test_multinomial_likelihood_equals_numpy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 13))
    counts = rng.integers(0, 3, (3, 13)).astype(float)
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(multinomial_log_likelihood(jnp.asarray(logits), jnp.asarray(counts)),
                               (log_softmax * counts).sum(1), rtol=1e-5)


def test_beta_schedule():
    assert float(beta_schedule(0, 100)) == 0.0
    assert float(beta_schedule(50, 100, 0.2)) == pytest.approx(0.2)
    assert float(beta_schedule(25, 100, 1.0)) == pytest.approx(0.25)


def test_vae_blocks_shapes_and_grads():
    with jax.enable_x64(True):
        encoder = VAEEncoder([5], 3, dtype=jnp.float64, param_dtype=jnp.float64)
        decoder = VAEDecoder([5], 7, dtype=jnp.float64, param_dtype=jnp.float64)
        x = jnp.asarray(np.random.default_rng(3).integers(0, 2, (2, 7)), jnp.float64)
        pe = meta.unbox(encoder.init(jax.random.key(0), x))
        pd = meta.unbox(decoder.init(jax.random.key(1), jnp.zeros((2, 3))))

        def elbo(pe, pd):
            mean, log_var = encoder.apply(pe, x)
            z = reparameterize(jax.random.key(2), mean, log_var)
            return (-multinomial_log_likelihood(decoder.apply(pd, z), x) + gaussian_kl(mean, log_var)).mean()

        check_grads(elbo, (pe, pd), order=1, modes=["rev"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["non_saturating", "hinge", "wasserstein"])
def test_gan_losses_formulas(kind):
    real = jnp.asarray([0.5, -1.0, 2.0])
    fake = jnp.asarray([-0.3, 0.7, 1.5])
    d, g = gan_losses(real, fake, kind)
    r, f = np.asarray(real), np.asarray(fake)
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    expected = {
        "non_saturating": (softplus(-r).mean() + softplus(f).mean(), softplus(-f).mean()),
        "hinge": (np.maximum(0, 1 - r).mean() + np.maximum(0, 1 + f).mean(), -f.mean()),
        "wasserstein": (f.mean() - r.mean(), -f.mean()),
    }[kind]
    np.testing.assert_allclose([float(d), float(g)], expected, rtol=1e-6)


def test_gradient_penalty_agrees_with_finite_differences():
    with jax.enable_x64(True):
        critic = Discriminator([6], dtype=jnp.float64, param_dtype=jnp.float64)
        rng = np.random.default_rng(4)
        real = jnp.asarray(rng.normal(size=(3, 5)))
        fake = jnp.asarray(rng.normal(size=(3, 5)))
        params = critic.init(jax.random.key(0), real)
        key = jax.random.key(7)
        penalty = gradient_penalty(lambda x: critic.apply(params, x), real, fake, key)
        epsilon = np.asarray(jax.random.uniform(key, (3, 1), jnp.float64))
        mixed = epsilon * np.asarray(real) + (1 - epsilon) * np.asarray(fake)
        h = 1e-6
        norms = []
        for row in range(3):
            grad = []
            for k in range(5):
                up, down = mixed.copy(), mixed.copy()
                up[row, k] += h
                down[row, k] -= h
                grad.append((float(critic.apply(params, up)[row]) - float(critic.apply(params, down)[row])) / (2 * h))
            norms.append(np.linalg.norm(grad))
        assert float(penalty) == pytest.approx(np.mean((np.asarray(norms) - 1) ** 2), rel=1e-5)


def test_generator_discriminator_shapes():
    generator = Generator([11], 7, output_activation="sigmoid")
    noise = jnp.zeros((3, 5))
    params = generator.init(jax.random.key(0), noise)
    sample = generator.apply(params, noise)
    assert sample.shape == (3, 7) and float(sample.min()) >= 0 and float(sample.max()) <= 1
    critic = Discriminator([13])
    assert critic.apply(critic.init(jax.random.key(1), sample), sample).shape == (3,)


def test_encoding_and_gan_gradients():
    with jax.enable_x64(True):
        times = jnp.asarray([[0.5, 1.5, 2.0]], jnp.float64)
        for layer in (Time2Vec(5, dtype=jnp.float64, param_dtype=jnp.float64),
                      FunctionalTimeEncoding(4, dtype=jnp.float64, param_dtype=jnp.float64)):
            params = meta.unbox(layer.init(jax.random.key(0), times))
            check_grads(lambda p, t, layer=layer: layer.apply(p, t).sum(), (params, times), order=1, modes=["rev"],
                        atol=1e-4, rtol=1e-4)
        noise = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3)))
        generator = Generator([4], 5, dtype=jnp.float64, param_dtype=jnp.float64)
        critic = Discriminator([4], dtype=jnp.float64, param_dtype=jnp.float64)
        pg = meta.unbox(generator.init(jax.random.key(0), noise))
        pc = meta.unbox(critic.init(jax.random.key(1), jnp.zeros((2, 5))))

        def generator_loss(pg, pc):
            return gan_losses(critic.apply(pc, noise[:, :1] * jnp.ones((2, 5))), critic.apply(pc, generator.apply(pg, noise)),
                              "non_saturating")[1]

        check_grads(generator_loss, (pg, pc), order=1, modes=["rev"], atol=1e-4, rtol=1e-4)
        lat = jnp.asarray([40.0, 10.0])
        check_grads(lambda a: haversine(a, -74.0, 34.0, -118.0).sum(), (lat,), order=1, modes=["rev"], atol=1e-4,
                    rtol=1e-4)
