"""The torch paths on a GPU give the CPU's answers (skipped where no CUDA device is present).

Every torch path takes a ``device``; these checks run the real pieces there: the straight-ray
operator and its adjoint, the sweeping eikonal and its gradient, the shipped decoder, a latent
inversion that must reach the noise, the sampler on a closed-form Gaussian posterior, a proposal
network, and VAE training that resumes.
``GEOINV_TEST_DEVICE=cpu python -m pytest tests/test_gpu.py`` runs the same checks on the CPU (to
check the checks); CI has no GPU, so they are skipped there.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import geoinv
from geoinv import FaciesVelocity, Grid2D, InverseProblem, LatentMCMC, StraightRay, Survey, SweepingEikonal
from geoinv.prior import default_vae
from geoinv.prior.base import StandardNormalPrior

DEVICE = os.environ.get("GEOINV_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")


def test_straight_ray_on_the_device_equals_the_cpu_and_passes_the_dot_test():
    operator = StraightRay(Grid2D.crosshole(), Survey.crosshole())
    generator = torch.Generator().manual_seed(0)
    slowness = 1 / 0.07e9 + 1e-9 * torch.rand(2, *operator.grid.shape, generator=generator, dtype=torch.float64)
    on_device = operator(slowness.to(DEVICE))
    assert on_device.device.type == torch.device(DEVICE).type
    torch.testing.assert_close(on_device.cpu(), operator(slowness), rtol=1e-10, atol=0.0)
    # adjoint through autograd on the device: <F x, y> = <x, Fᵀ y>
    model = torch.rand(1, *operator.grid.shape, generator=generator, dtype=torch.float64).to(DEVICE)
    data = torch.rand(1, operator.survey.n_data, generator=generator, dtype=torch.float64).to(DEVICE)
    model.requires_grad_(True)
    (operator(model) * data).sum().backward()
    left = float((operator(model.detach()) * data).sum())
    right = float((model.detach() * model.grad).sum())
    assert abs(left - right) <= 1e-10 * abs(left)


def test_the_sweeping_eikonal_on_the_device_equals_the_cpu_with_its_gradient():
    """The torch-native eikonal: every sweep and both derivative solves run on the device."""
    operator = SweepingEikonal(Grid2D.crosshole(), Survey.crosshole())
    with torch.no_grad():
        models = FaciesVelocity().slowness(default_vae().decode(torch.randn(2, 20, generator=torch.Generator()
                                                                             .manual_seed(4))).double())
    weights = torch.randn(2, operator.n_data, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    results = []
    for device in ("cpu", DEVICE):
        model = models.to(device).requires_grad_(True)
        times = operator(model)
        (times * weights.to(device)).sum().backward()
        results.append((times.detach().cpu(), model.grad.cpu()))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-9, atol=0.0)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-6, atol=1e-6 * float(results[0][1].abs().max()))


def test_the_shipped_decoder_on_the_device_equals_the_cpu():
    latent = torch.randn(8, 20, generator=torch.Generator().manual_seed(1))
    on_cpu = default_vae().decode(latent)
    on_device = default_vae(device=DEVICE).decode(latent.to(DEVICE))
    torch.testing.assert_close(on_device.cpu(), on_cpu, rtol=0.0, atol=1e-4)  # cuDNN sums in another order


def test_latent_inversion_on_the_device_reaches_the_noise():
    prior = default_vae(device=DEVICE).frozen()
    grid, survey, petrophysics = Grid2D.crosshole(), Survey.crosshole(), FaciesVelocity()
    operator = StraightRay(grid, survey)
    with torch.no_grad():
        truth = default_vae().decode(torch.randn(1, 20, generator=torch.Generator().manual_seed(7)))
    clean = operator(petrophysics.slowness(truth.double()))[0].numpy()
    data = survey.with_data(clean + 0.25e-9 * np.random.default_rng(8).standard_normal(clean.shape), 0.25e-9)
    solutions = geoinv.invert(data, prior, operator, "latent-sgd", petrophysics, n_candidates=4, refine=None)
    assert solutions.normalised_misfit[0, 0] <= 1.1
    assert float((solutions.models[0, 0] - truth[0]).pow(2).mean().sqrt()) < 0.1


class VectorPrior(StandardNormalPrior):
    """z ~ N(0, I) in 3 dimensions, decoded as itself."""

    latent_dim = 3
    model_shape = (1, 3)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return latent.reshape(-1, 1, 3)


def test_sampler_on_the_device_samples_the_closed_form_posterior():
    """Linear forward, N(0, I) prior: posterior N(C Aᵀd/σ², C) with C = (I + AᵀA/σ²)⁻¹, chains on the device."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(5, 3, generator=generator)
    sigma = 0.5
    observed = matrix @ torch.randn(3, generator=generator) + sigma * torch.randn(5, generator=generator)
    covariance = torch.linalg.inv(torch.eye(3) + matrix.T @ matrix / sigma**2)
    mean = covariance @ matrix.T @ observed / sigma**2
    on_device = matrix.to(DEVICE)
    problem = InverseProblem(lambda z: z @ on_device.T.to(z.dtype), 3, 5,
                             lambda n, generator=None: torch.randn(n, 3, generator=generator),
                             observed=observed, noise_std=sigma, device=DEVICE,
                             to_model=lambda z: z.reshape(-1, 1, 3))
    problem.prior = VectorPrior()
    solutions = LatentMCMC(n_draws=1500, n_warmup=400, n_samples=4000, seed=1).solve(problem)
    samples = torch.as_tensor(np.asarray(solutions.history["chain_latent"][:, 0])).reshape(-1, 3).float()
    assert torch.allclose(samples.mean(dim=0), mean, atol=0.1 * covariance.diagonal().sqrt().max())
    assert torch.allclose(torch.cov(samples.T), covariance, atol=0.2 * covariance.diagonal().max())


def test_proposal_network_on_the_device_equals_the_cpu_and_learns_the_inverse():
    from geoinv.solvers.proposals import ProposalConfig, ProposalNetwork

    generator = torch.Generator().manual_seed(2)
    matrix = torch.randn(12, 4, generator=generator, dtype=torch.float64).float()
    parameters = torch.randn(512, 4, generator=generator)
    data = parameters @ matrix.T
    config = ProposalConfig(hidden=(64,), epochs=30, members=2)
    on_cpu = ProposalNetwork(12, 4, config).fit(parameters, data, 0.05)
    on_device = ProposalNetwork(12, 4, config).to(DEVICE).fit(parameters.to(DEVICE), data.to(DEVICE), 0.05)
    assert on_device.history[-1] == pytest.approx(on_cpu.history[-1], rel=0.05)  # same draws, other sums
    proposals = on_device.propose(data[:8], 6, torch.Generator().manual_seed(3))
    assert proposals.device.type == torch.device(DEVICE).type and proposals.shape == (8, 6, 4)
    means = proposals[:, :2].mean(dim=1).cpu()  # the members' means come first
    assert float((means - parameters[:8]).abs().mean()) < 0.2


@pytest.mark.parametrize("mixed_precision, tolerance", [("off", (1e-4, 1e-5)), ("auto", (2e-2, 2e-3))])
def test_training_on_the_device_resumes_and_its_checkpoint_loads_on_the_cpu(tmp_path, mixed_precision, tolerance):
    """Training draws its crops and noise from a CPU generator on any device, so a resumed run on the
    device takes the same steps as an uninterrupted one (up to cuDNN's summation order; in bfloat16,
    which ``'auto'`` uses on a GPU, up to its rounding of that order)."""
    from geoinv.prior import TrainConfig, VAEConfig, channelized_image, train_vae
    from geoinv.prior.vae import load_vae

    image = channelized_image((400, 200), seed=3)
    config = VAEConfig((32, 32), latent_dim=8, channels=(8, 16, 32), kernels=(4, 4, 4), strides=(2, 2, 2), hidden=64)

    def train(path, steps):
        return train_vae(image, path, config, TrainConfig(steps=steps, batch_size=16, eval_every=30, eval_patches=16,
                                                          beta_warmup_steps=10, mixed_precision=mixed_precision),
                         device=DEVICE, progress=False, keep="last")

    straight = train(tmp_path / "straight.pt", 60)
    train(tmp_path / "resumed.pt", 30)
    resumed = train(tmp_path / "resumed.pt", 60)
    assert straight.metadata["training"]["steps_done"] == resumed.metadata["training"]["steps_done"] == 60
    for first, second in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(first, second, rtol=tolerance[0], atol=tolerance[1])
    assert torch.isfinite(torch.as_tensor(straight.metadata["history"]["loss"])).all()
    loaded = load_vae(tmp_path / "straight.pt")
    latent = torch.randn(2, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(loaded.decode(latent), straight.to("cpu").decode(latent), rtol=0.0, atol=1e-5)
