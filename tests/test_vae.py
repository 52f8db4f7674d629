import pytest
import torch

from geoinv import CheckpointError, ConfigError
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


def test_resumed_training_equals_uninterrupted(tmp_path, image):
    settings = {"batch_size": 8, "lr": 1e-3, "beta": 1.0, "beta_warmup_steps": 0, "eval_every": 5,
                "eval_patches": 16, "seed": 2}
    straight = train_vae(image, tmp_path / "a.pt", TINY, TrainConfig(steps=10, **settings),
                         holdout_fraction=0.25, progress=False)
    train_vae(image, tmp_path / "b.pt", TINY, TrainConfig(steps=5, **settings), holdout_fraction=0.25,
              progress=False)
    resumed = train_vae(image, tmp_path / "b.pt", TINY, TrainConfig(steps=10, **settings),
                        holdout_fraction=0.25, progress=False)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


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

