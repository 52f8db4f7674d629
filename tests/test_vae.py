import numpy as np
import pytest
import torch

from geoinv import CheckpointError, ConfigError, GeoinvWarning
from geoinv.metrics import variogram
from geoinv.prior import (
    VAE,
    ChannelConfig,
    PatchSampler,
    TrainConfig,
    VAEConfig,
    channelized_image,
    heldout_accuracy,
    load_vae,
    save_checkpoint,
    train_vae,
)
from geoinv.prior.adversarial import (
    PatchDiscriminator,
    adaptive_weight,
    discriminator_loss,
    generator_loss,
    indicator_variogram,
    proportion_spread_penalty,
    variogram_penalty,
)
from geoinv.prior.vae import read_checkpoint, vae_loss

TINY = VAEConfig((32, 32), latent_dim=8, channels=(8, 16, 32), kernels=(4, 4, 4), strides=(2, 2, 2), hidden=64)


@pytest.fixture(scope="module")
def image():
    return channelized_image((240, 240), ChannelConfig(width_mean=5, wavelength_min=40, wavelength_max=90),
                             seed=3)


@pytest.mark.parametrize("shape", [(129, 65), (33, 17), (40, 64), (31, 31)])
def test_arbitrary_model_shapes_decode_exactly(shape):
    vae = VAE(VAEConfig(shape, latent_dim=5, channels=(4, 8, 8), kernels=(5, 4, 4), strides=(2, 2, 2),
                        hidden=16))
    models = torch.rand(3, *shape)
    logits, mean, _ = vae(models)
    assert logits.shape == (3, *shape) and mean.shape == (3, 5)
    decoded = vae.decode(torch.randn(2, 5))
    assert decoded.shape == (2, *shape)
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_reference_architecture_is_available():
    config = VAEConfig.reference()
    assert config.channels == (32, 64, 128, 256) and config.hidden == 512 and config.latent_dim == 20
    assert VAE(config).decode(torch.zeros(1, 20)).shape == (1, 129, 65)


def test_decoding_is_deterministic_and_batched():
    vae = VAE(TINY).eval()
    latent = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    batch = vae.decode(latent)
    torch.testing.assert_close(batch, vae.decode(latent))
    torch.testing.assert_close(batch[2], vae.decode(latent[2:3])[0], rtol=1e-5, atol=1e-6)


def test_gradients_flow_through_decoder():
    vae = VAE(TINY).eval().double()
    latent = torch.randn(2, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: vae.decode(z).sum((1, 2)), (latent,))


def test_tiny_vae_learns_better_than_constant_baseline(tmp_path, image):
    config = TrainConfig(steps=400, batch_size=32, lr=3e-3, beta=10.0, beta_warmup_steps=100, eval_every=100,
                         eval_patches=200, seed=1)
    vae = train_vae(image, tmp_path / "tiny.pt", TINY, config, holdout_fraction=0.25, progress=False)
    sampler = PatchSampler(image, TINY.model_shape, 0.25)
    heldout = sampler.test_batch(300, torch.Generator().manual_seed(9))
    channel_fraction = heldout.mean().item()
    constant_accuracy = max(channel_fraction, 1 - channel_fraction)
    accuracy = heldout_accuracy(vae, heldout)
    assert accuracy > constant_accuracy + 0.05
    assert vae.metadata["training"]["steps_done"] == 400
    assert len(vae.metadata["history"]["heldout_accuracy"]) == 4


def _assert_resume_is_exact(tmp_path, image, settings: dict, steps: int, stop_at: int):
    """Train ``steps`` straight and in two runs split at ``stop_at``; the weights must agree."""
    straight = train_vae(image, tmp_path / "a.pt", TINY, TrainConfig(steps=steps, **settings),
                         holdout_fraction=0.25, progress=False, keep="last")
    train_vae(image, tmp_path / "b.pt", TINY, TrainConfig(steps=stop_at, **settings), holdout_fraction=0.25,
              progress=False)
    resumed = train_vae(image, tmp_path / "b.pt", TINY, TrainConfig(steps=steps, **settings),
                        holdout_fraction=0.25, progress=False, keep="last")
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)
    return resumed


def test_resumed_training_equals_uninterrupted(tmp_path, image):
    settings = {"batch_size": 8, "lr": 1e-3, "beta": 1.0, "beta_warmup_steps": 0, "eval_every": 5,
                "eval_patches": 16, "seed": 2}
    resumed = _assert_resume_is_exact(tmp_path, image, settings, steps=10, stop_at=5)
    runs = resumed.metadata["runs"]
    assert [(run["first_step"], run["last_step"]) for run in runs] == [(0, 5), (5, 10)]
    assert runs[1]["steps"] == 10 and runs[1]["beta"] == 1.0


def test_mixed_precision_trains_in_bfloat16_resumes_exactly_and_is_off_on_the_cpu_by_default(tmp_path, image):
    settings = {"batch_size": 8, "lr": 1e-3, "beta": 1.0, "beta_warmup_steps": 0, "eval_every": 3, "eval_patches": 16,
                "seed": 2, "adversarial": 1.0, "adversarial_batch": 8, "variogram_weight": 0.3}
    (tmp_path / "bf16").mkdir()
    forced = _assert_resume_is_exact(tmp_path / "bf16", image, {**settings, "mixed_precision": "bf16"}, 6, 3)
    assert [run["mixed_precision"] for run in forced.metadata["runs"]] == ["bf16", "bf16"]
    assert all(value.dtype == torch.float32 for value in forced.state_dict().values())  # float32 weights
    runs = {setting: train_vae(image, tmp_path / f"{setting}.pt", TINY,
                               TrainConfig(steps=6, **settings, mixed_precision=setting), holdout_fraction=0.25,
                               progress=False, keep="last").state_dict() for setting in ("auto", "off")}
    for key, value in runs["off"].items():  # auto is float32 on the CPU
        assert torch.equal(runs["auto"][key], value)
    assert any(not torch.equal(forced.state_dict()[key], value) for key, value in runs["off"].items())
    with pytest.raises(ConfigError, match="mixed_precision must be one of 'auto', 'bf16', 'off'"):
        TrainConfig(mixed_precision="fp16")


@pytest.mark.slow
def test_compiled_training_resumes_exactly_and_falls_back_where_compiling_fails(tmp_path, image):
    settings = {"batch_size": 8, "lr": 1e-3, "beta": 1.0, "beta_warmup_steps": 0, "eval_every": 3,
                "eval_patches": 16, "seed": 2, "compile": True}
    resumed = _assert_resume_is_exact(tmp_path, image, settings, steps=6, stop_at=3)
    assert [run["compile"] for run in resumed.metadata["runs"]] == [True, True]
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()
    broken = {"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False, "autotune_local_cache": False}
    with torch._inductor.config.patch(broken), pytest.warns(GeoinvWarning, match="torch.compile failed"):
        fallen = train_vae(image, tmp_path / "c.pt", TINY, TrainConfig(steps=3, **settings), holdout_fraction=0.25,
                           progress=False, keep="last")
    torch._dynamo.reset()
    eager = train_vae(image, tmp_path / "d.pt", TINY, TrainConfig(steps=3, **{**settings, "compile": False}),
                      holdout_fraction=0.25, progress=False, keep="last")
    for key, value in eager.state_dict().items():  # the failed first call drew nothing: same batches
        torch.testing.assert_close(fallen.state_dict()[key], value)


def latest_within(history: dict, tolerance: float, warmup: int) -> tuple[float, int, float]:
    """(accuracy, step, highest) of the latest evaluation after the warm-up within ``tolerance`` of the highest
    accuracy seen up to it."""
    highest, kept = -1.0, None
    for accuracy, step in zip(history["heldout_accuracy"], history["step"]):
        if step >= warmup:
            highest = max(highest, accuracy)
            kept = (accuracy, step, highest) if accuracy >= highest - tolerance else kept
    assert kept is not None
    return kept


@pytest.mark.parametrize("tolerance", [0.0, 0.02])
def test_training_keeps_the_best_evaluation_after_the_warm_up_across_resumed_runs(tmp_path, image, tolerance):
    settings = {"batch_size": 16, "beta": 10.0, "beta_warmup_steps": 20, "eval_every": 10, "eval_patches": 64,
                "seed": 4, "keep_tolerance": tolerance}
    train_vae(image, tmp_path / "run.pt", TINY, TrainConfig(steps=80, lr=1e-2, **settings), holdout_fraction=0.25,
              progress=False)
    # resumed with a learning rate that wrecks the model: its best evaluation is in the first run (0.1: 0.5
    # diverged to non-finite weights with two threads, which load_vae rightly refuses)
    best = train_vae(image, tmp_path / "run.pt", TINY, TrainConfig(steps=100, lr=0.1, **settings),
                     holdout_fraction=0.25, progress=False)
    history = best.metadata["history"]
    after_warmup = [(acc, step) for acc, step in zip(history["heldout_accuracy"], history["step"]) if step >= 20]
    kept = best.metadata["training"]["kept"]
    assert kept["which"] == "best"
    assert (kept["heldout_accuracy"], kept["step"], kept["highest_heldout_accuracy"]) == latest_within(
        history, tolerance, 20)
    assert kept["highest_heldout_accuracy"] == max(after_warmup)[0]
    if tolerance == 0:
        assert (kept["heldout_accuracy"], kept["step"]) == max(after_warmup)  # ties: the latest
    else:  # this run has a later evaluation than the highest within the tolerance: it is the one kept
        assert kept["step"] > max(after_warmup)[1]
    assert 20 <= kept["step"] <= 80 and kept["heldout_accuracy"] > history["heldout_accuracy"][-1]
    # the weights returned are that evaluation's: they reproduce its accuracy on the same held-out crops
    patches = PatchSampler(image, TINY.model_shape, 0.25).test_batch(64, torch.Generator().manual_seed(5))
    assert heldout_accuracy(best, patches) == pytest.approx(kept["heldout_accuracy"], abs=1e-6)
    # the checkpoint, loaded for use (prior-report, invert, export-vae), gives the weights its run kept
    loaded = load_vae(tmp_path / "run.pt")
    assert loaded.metadata["training"]["kept"]["step"] == kept["step"]
    assert heldout_accuracy(loaded, patches) == pytest.approx(kept["heldout_accuracy"], abs=1e-6)
    last = train_vae(image, tmp_path / "run.pt", TINY, TrainConfig(steps=100, lr=0.1, **settings),
                     holdout_fraction=0.25, progress=False, keep="last")
    assert last.metadata["training"]["kept"] == {"which": "last", "step": 100}
    assert heldout_accuracy(last, patches) == pytest.approx(history["heldout_accuracy"][-1], abs=1e-6)
    assert heldout_accuracy(load_vae(tmp_path / "run.pt"), patches) == pytest.approx(
        history["heldout_accuracy"][-1], abs=1e-6)
    with pytest.raises(ConfigError, match="keep"):
        train_vae(image, tmp_path / "x.pt", TINY, TrainConfig(steps=1, **settings), progress=False, keep="first")


def test_checkpoint_roundtrip_is_exact(tmp_path):
    vae = VAE(TINY).eval()
    save_checkpoint(tmp_path / "m.pt", vae, {"note": "test"})
    loaded = load_vae(tmp_path / "m.pt")
    for key, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert loaded.metadata["note"] == "test" and "geoinv_version" in loaded.metadata
    latent = torch.randn(3, 8)
    assert torch.equal(loaded.decode(latent), vae.decode(latent))


def test_checkpoint_errors(tmp_path, image):
    vae = VAE(TINY)
    save_checkpoint(tmp_path / "m.pt", vae, {})
    with pytest.raises(CheckpointError, match=r"shape \(32, 32\).*\(129, 65\)"):
        load_vae(tmp_path / "m.pt", expect_shape=(129, 65))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "m.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_vae(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vae(tmp_path / "none.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a geoinv VAE"):
        load_vae(tmp_path / "other.pt")
    other = VAEConfig((32, 32), latent_dim=4, channels=(8, 16, 32), kernels=(4, 4, 4), strides=(2, 2, 2),
                      hidden=64)
    with pytest.raises(CheckpointError, match="architecture"):
        train_vae(image, tmp_path / "m.pt", other, TrainConfig(steps=1), holdout_fraction=0.25, progress=False)


def test_bad_inputs():
    vae = VAE(TINY)
    with pytest.raises(ConfigError, match="latent"):
        vae.decode(torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="expects"):
        vae.encode(torch.zeros(1, 16, 16))
    with pytest.raises(ConfigError, match="norm"):
        VAEConfig(norm="layer")
    with pytest.raises(ConfigError, match="beta"):
        TrainConfig(beta=-1)



@pytest.mark.parametrize("pulls", [{}, {"variogram_weight": 1.0}, {"proportion_spread_weight": 1.0}])
def test_adversarial_training_resumes_exactly(tmp_path, image, pulls):
    settings = {"batch_size": 8, "lr": 1e-3, "beta": 1.0, "beta_warmup_steps": 0, "eval_every": 5,
                "eval_patches": 16, "seed": 4, "adversarial": 0.5, "adversarial_batch": 4, **pulls}
    resumed = _assert_resume_is_exact(tmp_path, image, settings, steps=8, stop_at=4)
    history = resumed.metadata["history"]
    assert len(history["prior_binary_like"]) == len(history["step"]) == 3  # steps 4, 5 and 8
    assert all(0.0 <= value <= 1.0 for value in history["prior_binary_like"])


def test_adaptive_weight_balances_gradients():
    torch.manual_seed(0)
    vae = VAE(TINY)
    critic = PatchDiscriminator(widths=(8, 16))
    assert critic(torch.rand(5, 32, 32)).shape == (5,)
    models = (torch.rand(4, 32, 32) > 0.7).float()
    logits, mean, logvar = vae(models)
    _, reconstruction, _ = vae_loss(logits, models, mean, logvar, 1.0)
    adversarial = generator_loss(critic, vae.decode(torch.randn(4, 8)))
    last_layer = vae.decoder_conv[-1].weight
    weight = adaptive_weight(reconstruction, adversarial, last_layer, factor=0.3)
    grad_reconstruction = torch.autograd.grad(reconstruction, last_layer, retain_graph=True)[0]
    grad_adversarial = torch.autograd.grad(adversarial, last_layer, retain_graph=True)[0]
    grad_weighted = torch.autograd.grad(weight * adversarial, last_layer)[0]
    assert not weight.requires_grad
    # 1e-4 guards the division when the critic gives no gradient
    expected = 0.3 * grad_reconstruction.norm() * grad_adversarial.norm() / (grad_adversarial.norm() + 1e-4)
    assert grad_weighted.norm().item() == pytest.approx(expected.item(), rel=1e-4)


def test_discriminator_loss_learns_to_tell_binary_from_soft():
    torch.manual_seed(0)
    critic = PatchDiscriminator(widths=(8, 16))
    optimizer = torch.optim.Adam(critic.parameters(), 2e-3)
    for _ in range(150):
        real = (torch.rand(16, 32, 32) > 0.7).float()
        soft = torch.full((16, 32, 32), 0.3) + 0.05 * torch.randn(16, 32, 32)
        loss = discriminator_loss(critic, real, soft)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 1.0  # chance level is 2 ln 2 ≈ 1.39; spectral norm bounds the logits
    with torch.no_grad():
        assert (critic((torch.rand(8, 32, 32) > 0.7).float()) > critic(torch.full((8, 32, 32), 0.3))).all()


def test_generator_loss_pulls_towards_the_target_proportion():
    critic = PatchDiscriminator(widths=(8, 16))
    soft = torch.full((4, 32, 32), 0.2, requires_grad=True)
    plain = generator_loss(critic, soft)
    pulled = generator_loss(critic, soft, target_proportion=0.3, proportion_weight=1.0, proportion_scale=0.02)
    assert pulled.item() == pytest.approx(plain.item() + 25.0, rel=1e-4)  # ((0.2 - 0.3) / 0.02)² = 25
    (gradient,) = torch.autograd.grad(pulled - plain, soft)
    assert (gradient < 0).all()  # raising the channel values lowers the loss


def test_indicator_variogram_is_the_metric_s_variogram_at_every_lag():
    models = torch.rand(3, 17, 11, dtype=torch.float64)
    for dim, max_lag in ((1, 16), (2, 10), (1, 5)):
        assert np.allclose(indicator_variogram(models, max_lag, dim).numpy(), variogram(models.numpy(), max_lag, dim),
                           rtol=0, atol=1e-12)


def test_variogram_penalty_measures_the_binary_draws_and_pulls_the_soft_ones():
    binary = (torch.rand(6, 32, 32, generator=torch.Generator().manual_seed(1)) > 0.7).double()
    target_x, target_z = indicator_variogram(binary, 16, 2), indicator_variogram(binary, 16, 1)
    # soft values on the right side of 0.5 threshold to the same binary models: no gap
    soft = (0.2 + 0.6 * binary).requires_grad_()
    assert variogram_penalty(soft, target_x, target_z).item() == pytest.approx(0.0, abs=1e-20)
    # a 10 % larger target at every lag is a gap of 0.1 / 1.1 of the target, in units of scale 0.05
    penalty = variogram_penalty(soft, 1.1 * target_x, 1.1 * target_z, scale=0.05)
    assert penalty.item() == pytest.approx((0.1 / 1.1 / 0.05) ** 2, rel=1e-9)
    (gradient,) = torch.autograd.grad(penalty, soft)
    assert gradient.abs().sum() > 0  # straight-through: the soft values get the binary models' gradient
    critic = PatchDiscriminator(widths=(8, 16))
    plain = generator_loss(critic, soft.float())
    pulled = generator_loss(critic, soft.float(), target_variograms=(1.1 * target_x.float(), 1.1 * target_z.float()),
                            variogram_weight=2.0)
    assert (pulled - plain).item() == pytest.approx(2.0 * penalty.item(), rel=1e-4)


def test_train_variograms_are_the_crops_variograms(image):
    sampler = PatchSampler(image, (32, 32), 0.25)
    target_x, target_z = sampler.train_variograms
    assert target_x.shape == target_z.shape == (16,)
    crops = sampler.train_batch(5000, torch.Generator().manual_seed(0)).numpy()
    assert np.allclose(target_x.numpy(), variogram(crops, 16, 2), rtol=0.02)
    assert np.allclose(target_z.numpy(), variogram(crops, 16, 1), rtol=0.02)


@pytest.mark.parametrize("name", ["variogram_weight", "proportion_spread_weight"])
def test_pulls_inside_the_adversarial_term_need_it(name):
    with pytest.raises(ConfigError, match=f"{name} acts inside the adversarial term"):
        TrainConfig(**{name: 1.0})
    with pytest.raises(ConfigError, match=f"{name} >= 0"):
        TrainConfig(adversarial=1.0, **{name: -1.0})


def test_train_vae_says_when_it_kept_an_evaluation_below_the_highest():
    from geoinv.cli import _kept_text

    assert "within --keep-tolerance of the highest 0.9753" in _kept_text(
        {"step": 11455, "heldout_accuracy": 0.97485, "highest_heldout_accuracy": 0.97531})
    for kept in ({"step": 9500, "heldout_accuracy": 0.9753, "highest_heldout_accuracy": 0.9753},
                 {"step": 9500, "heldout_accuracy": 0.9753}):  # a checkpoint from before keep_tolerance
        assert _kept_text(kept) == ("kept the best evaluation: step 9500, held-out accuracy 0.9753 "
                                    "(--keep last for the last step's weights)")


@pytest.mark.parametrize("tolerance", [-0.001, 1.0, float("nan")])
def test_keep_tolerance_is_an_accuracy(tolerance):
    with pytest.raises(ConfigError, match=r"keep_tolerance must be in \[0, 1\)"):
        TrainConfig(keep_tolerance=tolerance)


def test_train_proportion_quantiles_are_those_of_every_crop_position():
    image = (np.random.default_rng(3).random((40, 30)) < np.linspace(0.1, 0.6, 30)).astype(float)
    sampler = PatchSampler(image, (8, 5), 0.25)  # training rows 0–29
    proportions = [image[top:top + 8, left:left + 5].mean() for top in range(30 - 8 + 1) for left in range(30 - 5 + 1)]
    levels = (np.arange(7) + 0.5) / 7
    assert np.allclose(sampler.train_proportion_quantiles(7).numpy(), np.quantile(proportions, levels), atol=1e-6)
    assert sampler.train_proportion_quantiles(7) is sampler.train_proportion_quantiles(7)  # computed once


def test_proportion_spread_penalty_is_zero_on_the_quantiles_and_widens_collapsed_draws():
    quantiles = torch.linspace(0.1, 0.5, 6)
    spread = quantiles[torch.tensor([3, 0, 5, 1, 4, 2])][:, None, None] * torch.ones(6, 4, 4)  # any order
    assert proportion_spread_penalty(spread, quantiles).item() == pytest.approx(0.0, abs=1e-12)
    collapsed = torch.full((6, 4, 4), 0.3, requires_grad=True)  # the quantiles' mean, no spread
    penalty = proportion_spread_penalty(collapsed, quantiles)
    assert penalty.item() == pytest.approx(((quantiles - 0.3) / quantiles.std()).square().mean().item(), rel=1e-6)
    (gradient,) = torch.autograd.grad(penalty, collapsed)
    per_draw = gradient.sum(dim=(1, 2))  # ties sort in index order: draw i is matched to quantile i
    assert (per_draw[:3] > 0).all() and (per_draw[3:] < 0).all()  # the low draws lowered, the high ones raised
    critic = PatchDiscriminator(widths=(8, 16))
    plain = generator_loss(critic, collapsed)
    pulled = generator_loss(critic, collapsed, target_proportion_quantiles=quantiles, proportion_spread_weight=2.0)
    assert (pulled - plain).item() == pytest.approx(2.0 * penalty.item(), rel=1e-5)
    with pytest.raises(ValueError, match="5 quantiles for 6 draws"):
        proportion_spread_penalty(collapsed, quantiles[:5])


def test_train_proportion_is_the_expected_crop_mean(image):
    sampler = PatchSampler(image, (32, 32), 0.25)
    crops = sampler.train_batch(20000, torch.Generator().manual_seed(0))
    assert sampler.train_proportion == pytest.approx(crops.mean().item(), abs=0.004)


def test_resuming_a_checkpoint_without_runs_records_its_last_settings(tmp_path, image):
    settings = {"batch_size": 4, "eval_every": 2, "eval_patches": 8, "beta_warmup_steps": 0}
    train_vae(image, tmp_path / "old.pt", TINY, TrainConfig(steps=2, beta=5.0, **settings), holdout_fraction=0.25,
              progress=False)
    payload = torch.load(tmp_path / "old.pt", weights_only=True)
    del payload["training_state"]["runs"], payload["metadata"]["runs"]  # as written by geoinv 0.1
    del payload["training_state"]["history"]["prior_binary_like"]
    torch.save(payload, tmp_path / "old.pt")
    resumed = train_vae(image, tmp_path / "old.pt", TINY, TrainConfig(steps=4, beta=2.0, **settings),
                        holdout_fraction=0.25, progress=False)
    first, second = resumed.metadata["runs"]
    assert (first["beta"], first["last_step"], second["beta"], second["first_step"]) == (5.0, 2, 2.0, 2)
    assert "note" in first
    assert resumed.metadata["history"]["prior_binary_like"][0] is None  # not measured then
    assert len(resumed.metadata["history"]["prior_binary_like"]) == len(resumed.metadata["history"]["step"])


def test_interrupt_inside_a_step_resumes_exactly(tmp_path, image):
    from geoinv.prior.training import _Trainer

    config = TrainConfig(steps=6, batch_size=4, beta_warmup_steps=0, eval_every=3, eval_patches=8, seed=5)
    straight = train_vae(image, tmp_path / "a.pt", TINY, config, holdout_fraction=0.25, progress=False)
    trainer = _Trainer(image, tmp_path / "b.pt", TINY, config, "cpu", 0.25, "")
    draw, calls = trainer.sampler.train_batch, []

    def interrupted_batch(n, generator=None):  # SIGTERM arriving after step 4 drew its batch
        calls.append(n)
        batch = draw(n, generator)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return batch

    trainer.sampler.train_batch = interrupted_batch
    with pytest.raises(KeyboardInterrupt):
        trainer.run(progress=False)
    assert read_checkpoint(tmp_path / "b.pt")["training_state"]["step"] == 3
    resumed = train_vae(image, tmp_path / "b.pt", TINY, config, holdout_fraction=0.25, progress=False)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


def test_a_checkpoint_that_was_never_trained_is_flagged(tmp_path):
    """A random decoder runs without error but decodes noise: its provenance says so, and loading warns."""
    import warnings

    from geoinv.errors import GeoinvWarning
    from geoinv.prior.vae import VAE, VAEConfig, load_vae, save_checkpoint

    vae = VAE(VAEConfig((16, 12), 4, channels=(4, 8), kernels=(3, 3), strides=(2, 2), hidden=16))
    save_checkpoint(tmp_path / "random.pt", vae, {"note": "never trained"})
    with pytest.warns(GeoinvWarning, match="no training steps"):
        load_vae(tmp_path / "random.pt")
    save_checkpoint(tmp_path / "trained.pt", vae, {"training": {"steps_done": 10}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeoinvWarning)
        load_vae(tmp_path / "trained.pt")


def test_a_time_budget_shows_its_seconds_not_the_step_ceiling(tmp_path, image, capsys):
    config = TrainConfig(steps=10**9, batch_size=8, max_minutes=0.02, eval_every=10**6, seed=1)
    vae = train_vae(image, tmp_path / "timed.pt", TINY, config, holdout_fraction=0.25, progress=True)
    bar = capsys.readouterr().err.strip().split("\r")[-1]
    assert "/1 s [" in bar and "1000000000" not in bar  # 0.02 min = 1.2 s, rounded
    assert 0 < vae.metadata["training"]["steps_done"] < 10**9
