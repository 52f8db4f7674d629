import os
import pickle
import signal

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from geoinv import ConfigError, Eikonal, Grid2D, GridError, StraightRay, Survey
from geoinv.forward.parallel import KEPT_BATCHES, RemoteState
from geoinv.prior.channels import channelized_image

V_SLOW, V_FAST = 0.06e9, 0.08e9


@pytest.fixture(scope="module")
def off_node_survey():
    # reference boreholes, but sensors between grid nodes (0.1 m cells)
    return Survey.crosshole(0.0, 6.5, np.arange(25) * 0.5 + 0.43)


def test_homogeneous_within_0p2_percent(reference_grid, off_node_survey):
    op = Eikonal(reference_grid, off_node_survey)
    velocity = 0.07e9
    times, _ = op.simulate_numpy(np.full(reference_grid.shape, 1 / velocity))
    exact = off_node_survey.distances / velocity
    assert np.max(np.abs(times - exact) / exact) < 2e-3


def test_refinement_improves_accuracy(reference_grid, off_node_survey):
    slowness = np.full(reference_grid.shape, 1 / 0.07e9)
    exact = off_node_survey.distances * slowness[0, 0]
    errors = [np.max(np.abs(Eikonal(reference_grid, off_node_survey, refine=r).simulate_numpy(slowness)[0]
                            - exact) / exact) for r in (1, 2)]
    assert errors[1] < 0.7 * errors[0]


def _two_layer_time(source, receiver, interface):
    """Analytic first arrival: slow layer above ``interface`` (m), fast half-space below."""
    (xs, zs), (xr, zr) = source, receiver
    offset = abs(xr - xs)
    if zs > interface and zr > interface:
        return np.hypot(offset, zr - zs) / V_FAST
    if zs < interface and zr < interface:
        direct = np.hypot(offset, zr - zs) / V_SLOW
        a, b = interface - zs, interface - zr
        cos_c = np.sqrt(1 - (V_SLOW / V_FAST) ** 2)
        tan_c = (V_SLOW / V_FAST) / cos_c
        head = offset / V_FAST + (a + b) * cos_c / V_SLOW if offset > (a + b) * tan_c else np.inf
        return min(direct, head)
    top, bottom = ((xs, zs), (xr, zr)) if zs < interface else ((xr, zr), (xs, zs))

    def time(crossing):
        return (np.hypot(crossing - top[0], interface - top[1]) / V_SLOW
                + np.hypot(bottom[0] - crossing, bottom[1] - interface) / V_FAST)

    low, high = sorted((top[0], bottom[0]))
    return minimize_scalar(time, bounds=(low, high), method="bounded", options={"xatol": 1e-10}).fun


@pytest.mark.parametrize("refine, max_error, mean_error", [(1, 1e-2, 1e-3), (2, 5e-3, 5e-4)])
def test_two_layer_medium_matches_analytic_first_arrivals(reference_grid, refine, max_error, mean_error):
    # Sensors 0.25 m from the interface at the closest. The largest errors are head
    # waves: cell-centred nodes smear the interface over one node spacing.
    survey = Survey.crosshole(0.0, 6.5, np.arange(25) * 0.5 + 0.25)
    interface = 6.0  # a cell edge: 60 slow rows above, fast rows below
    slowness = np.full(reference_grid.shape, 1 / V_FAST)
    slowness[:60] = 1 / V_SLOW
    times, _ = Eikonal(reference_grid, survey, refine=refine).simulate_numpy(slowness)
    exact = np.array([_two_layer_time(s, r, interface) for s, r in
                      zip(survey.source_positions, survey.receiver_positions)])
    relative = np.abs(times - exact) / exact
    assert relative.max() < max_error
    assert relative.mean() < mean_error
    # head waves exist in this set-up and the operator finds them
    direct = survey.distances * np.where(survey.source_positions[:, 1] < interface, 1 / V_SLOW, 1 / V_FAST)
    assert (exact < direct - 1e-12).sum() > 20


@pytest.mark.parametrize("gradient", ["adjoint", "rays"])
def test_gradient_equals_straight_rays_in_homogeneous_medium(reference_grid, reference_survey, gradient):
    op = Eikonal(reference_grid, reference_survey, gradient=gradient)
    slowness = np.full(reference_grid.shape, 1 / 0.07e9)
    jacobian = op.jacobian(slowness)
    straight = StraightRay(reference_grid, reference_survey).matrix
    # rays: lengths sum to the distance; adjoint: J·s = t of the discrete solution (0.13 % off the exact times)
    np.testing.assert_allclose(np.asarray(jacobian.sum(1)).ravel(), reference_survey.distances,
                               rtol=1e-3 if gradient == "rays" else 2e-3)
    if gradient == "adjoint":
        np.testing.assert_allclose(jacobian @ slowness.ravel(), op.simulate_numpy(slowness)[0], rtol=1e-9)
    zz, xx = np.meshgrid(reference_grid.z_centers, reference_grid.x_centers, indexing="ij")
    direction = (np.sin(zz / 2.1) * np.cos(xx / 1.3) + 1.5).ravel()  # positive: no cancellation
    projected, expected = jacobian @ direction, straight @ direction
    assert np.max(np.abs(projected - expected) / expected) < 2e-2


def _directional_fd(op, slowness, direction, eps):
    plus, _ = op.simulate_numpy(slowness + eps * direction)
    minus, _ = op.simulate_numpy(slowness - eps * direction)
    return (plus - minus) / (2 * eps)


@pytest.mark.parametrize("gradient, medium, step, tolerance", [
    ("rays", "smooth", 1.0, 0.05), ("rays", "channels", 1.0, 0.15),
    # the adjoint is the derivative of the discrete solution itself: 0.04 % off a small-step FD
    # where the map is smooth (rays: 2 %); across channel contrasts the map has upwind kinks and
    # jumps between first- and second-order stencils, so FD only means something at larger steps
    ("adjoint", "smooth", 0.03, 0.005), ("adjoint", "channels", 1.0, 0.06),
])
def test_gradient_against_finite_differences(reference_grid, reference_survey, gradient, medium, step, tolerance):
    op = Eikonal(reference_grid, reference_survey, gradient=gradient)
    zz, xx = np.meshgrid(reference_grid.z_centers, reference_grid.x_centers, indexing="ij")
    if medium == "smooth":
        velocity = 0.07e9 * (1 + 0.2 * np.sin(zz / 1.7) * np.sin(xx / 1.1))
    else:
        velocity = V_FAST - 0.02e9 * channelized_image(reference_grid.shape, seed=3)
    slowness = 1 / velocity
    # 1 % smooth perturbation: smaller steps resolve the FMM's discrete upwind switches instead
    direction = (np.sin(zz / 2.1) * np.cos(xx / 1.3) + 0.5) * slowness * 0.01
    finite_difference = _directional_fd(op, slowness, direction, step)
    analytic = op.jacobian(slowness) @ direction.ravel()
    assert np.linalg.norm(analytic - finite_difference) / np.linalg.norm(finite_difference) < tolerance


def test_autograd_backward_matches_jacobian(small_grid, small_survey, rng):
    op = Eikonal(small_grid, small_survey)
    slowness = torch.as_tensor(1 / rng.uniform(0.06e9, 0.08e9, (2, *small_grid.shape)), dtype=torch.float64)
    slowness.requires_grad_(True)
    weights = torch.as_tensor(rng.normal(size=(2, small_survey.n_data)))
    (op(slowness) * weights).sum().backward()
    for b in range(2):
        expected = op.jacobian(slowness[b].detach().numpy()).T @ weights[b].numpy()
        np.testing.assert_allclose(slowness.grad[b].numpy().ravel(), expected, rtol=1e-10)


def test_rejects_bad_options(small_grid, small_survey):
    with pytest.raises(ConfigError, match="refine"):
        Eikonal(small_grid, small_survey, refine=0)
    with pytest.raises(ConfigError, match="order"):
        Eikonal(small_grid, small_survey, order=3)


def test_subset_of_sources_gives_same_fields(small_grid, small_survey):
    op = Eikonal(small_grid, small_survey)
    slowness = np.full(small_grid.shape, 1 / 0.07e9)
    np.testing.assert_allclose(op.traveltime_fields(slowness, [2])[0], op.traveltime_fields(slowness)[2])


@pytest.mark.slow
def test_agrees_with_pygimli_shortest_path():
    from geoinv.forward.pygimli import PyGimliShortestPath

    grid = Grid2D((65, 33), 0.2)
    survey = Survey.crosshole(0.0, 6.6, np.arange(1, 13) * 1.0)
    slowness = 1 / (V_FAST - 0.02e9 * channelized_image(grid.shape, seed=5,
                                                        config=None).astype(float))
    ours, _ = Eikonal(grid, survey).simulate_numpy(slowness)
    theirs = PyGimliShortestPath(grid, survey, secondary_nodes=3).response(slowness)
    relative = (theirs - ours) / ours
    # Dijkstra paths are restricted to mesh edges: slightly slow, never much faster
    assert np.abs(relative).mean() < 1e-2
    assert np.abs(relative).max() < 3e-2


def test_data_subset_matches_full_computation(small_grid, small_survey, rng):
    op = Eikonal(small_grid, small_survey)
    slowness = torch.as_tensor(1 / rng.uniform(0.06e9, 0.08e9, (2, *small_grid.shape)))
    full = op(slowness)
    subset = np.array([7, 3, 12, 3])
    torch.testing.assert_close(op(slowness, subset), full[:, subset])
    same_source = np.flatnonzero(small_survey.pairs[:, 0] == 1)
    jacobian = op.jacobian(slowness[0].numpy(), same_source)
    np.testing.assert_allclose(jacobian.toarray(), op.jacobian(slowness[0].numpy()).toarray()[same_source])
    slowness.requires_grad_(True)
    op(slowness, same_source).sum().backward()
    np.testing.assert_allclose(slowness.grad[0].numpy().ravel(), np.asarray(jacobian.sum(0)).ravel())


def test_data_index_validation(small_grid, small_survey):
    from geoinv import SurveyError

    op = Eikonal(small_grid, small_survey)
    with pytest.raises(SurveyError, match="data_index"):
        op(torch.ones(small_grid.shape), [0, small_survey.n_data])


def _two_layers(grid, interface_row, fast_below=True):
    slowness = np.full(grid.shape, 1 / (V_FAST if fast_below else V_SLOW))
    slowness[:interface_row] = 1 / (V_SLOW if fast_below else V_FAST)
    return slowness


@pytest.mark.parametrize("depth", [2.0, 0.3])  # 0.3 / 0.1 rounds down to 2.999…: the side must not depend on it
def test_sensors_on_an_interface_take_the_fast_side_whichever_it_is(depth):
    """A source on a facies interface starts with the faster cell's slowness, so flipping the two
    layers changes nothing (the old floor rule took the cell below: 1.25 ns between the two), and
    times along the interface are those of the fast medium within half a node of head-wave delay."""
    grid = Grid2D((40, 60), 0.1)
    row = round(depth / 0.1)
    survey = Survey([[0.5, depth]], [[x, depth] for x in (2.0, 3.5, 5.5)])
    operator = Eikonal(grid, survey)
    fast_below = operator.simulate_numpy(_two_layers(grid, row, True))[0]
    fast_above = operator.simulate_numpy(_two_layers(grid, row, False))[0]
    np.testing.assert_allclose(fast_below, fast_above, rtol=0, atol=1e-15)
    along_fast = survey.distances / V_FAST
    delay = fast_below - along_fast
    assert np.all(delay > 0) and np.all(delay < 0.7e-9)
    # the delay is the bilinear mean of the fast and the slow node rows: it halves with refine=2
    finer = Eikonal(grid, survey, refine=2).simulate_numpy(_two_layers(grid, row, True))[0] - along_fast
    assert np.all(finer < 0.6 * delay)


def test_worker_processes_give_bit_for_bit_the_results_of_one_process(small_grid, small_survey, rng):
    serial, parallel = Eikonal(small_grid, small_survey), Eikonal(small_grid, small_survey, workers=2)
    slowness = torch.as_tensor(1 / rng.uniform(0.06e9, 0.08e9, (3, *small_grid.shape)))
    weights = torch.as_tensor(rng.normal(size=(3, 9)))
    tangent = torch.as_tensor(rng.normal(size=slowness.shape)) * slowness
    subset = np.array([7, 3, 12, 3, 20, 0, 1, 2, 24])
    try:
        results = []
        for op in (serial, parallel):
            models = slowness.clone().requires_grad_(True)
            times = op(models, subset)
            (times * weights).sum().backward()
            results.append((times.detach(), models.grad, op.jvp(slowness, tangent, subset)))
        assert parallel._model_pool is not None  # the batch did go to the workers
        for one_process, two_processes in zip(*results):
            assert torch.equal(one_process, two_processes)
        clone = pickle.loads(pickle.dumps(parallel))  # a copy (Dask's, a worker's) carries no pool
        assert clone._model_pool is None and clone.workers == 2
        assert torch.equal(clone(slowness[:2]), serial(slowness[:2]))
        clone.close()
    finally:
        parallel.close()
    assert parallel._model_pool is None


@pytest.mark.parametrize("workers", [0, 1.5, True, "2"])
def test_rejects_bad_worker_counts(small_grid, small_survey, workers):
    with pytest.raises(ConfigError, match="workers must be an integer >= 1"):
        Eikonal(small_grid, small_survey, workers=workers)


def test_a_killed_worker_fails_one_batch_and_the_next_starts_fresh(small_grid, small_survey):
    from concurrent.futures.process import BrokenProcessPool

    op = Eikonal(small_grid, small_survey, workers=2)
    slowness = torch.full((2, *small_grid.shape), 1 / 0.07e9, dtype=torch.float64)
    try:
        expected = op(slowness)
        for process in op._model_pool._processes:
            os.kill(process.pid, signal.SIGKILL)
            process.join()
        with pytest.raises(BrokenProcessPool):
            op(slowness)
        assert torch.equal(op(slowness), expected)
    finally:
        op.close()


class _FailingEikonal(Eikonal):
    """Refuses models slower than a threshold, to see a worker's error reach the caller."""

    def simulate_numpy(self, slowness, data_index=None):
        if slowness.max() > 1 / 0.065e9:
            raise ValueError("too slow a model")
        return super().simulate_numpy(slowness, data_index)


def test_worker_errors_reach_the_caller_and_old_states_are_solved_again(small_grid, small_survey, rng):
    op = _FailingEikonal(small_grid, small_survey, workers=2)
    serial = Eikonal(small_grid, small_survey)
    slowness = torch.as_tensor(1 / rng.uniform(0.066e9, 0.08e9, (3, *small_grid.shape)))
    weights = torch.as_tensor(rng.normal(size=(3, small_survey.n_data)))
    try:
        times, state = op._simulate(slowness, None)
        assert all(isinstance(handle, RemoteState) for handle in state[1])  # the time fields stayed there
        for _ in range(KEPT_BATCHES):  # later batches push this one's states out of the workers
            op(slowness)
        expected = serial.vjp(slowness, weights)
        assert torch.equal(op._vjp(slowness, None, state, weights).reshape(expected.shape), expected)
        with pytest.raises(ValueError, match="too slow"):
            op(torch.full((2, *small_grid.shape), 1 / 0.06e9, dtype=torch.float64))
        assert torch.equal(op(slowness), times)  # the pool still serves
    finally:
        op.close()


def test_kernels_formed_in_the_workers_are_those_of_one_process(small_grid, small_survey, rng):
    from geoinv import FaciesVelocity, FieldUnknowns, build_problem

    from .helpers import TinyDecoder

    serial, parallel = Eikonal(small_grid, small_survey), Eikonal(small_grid, small_survey, workers=2)
    slowness = 1 / rng.uniform(0.06e9, 0.08e9, (3, *small_grid.shape))
    subset = np.array([7, 3, 12, 20])
    prior, latent = TinyDecoder(small_grid.shape), torch.as_tensor(rng.normal(size=(3, 3)), dtype=torch.float32)
    field = serial.make_synthetic_data(slowness[0], 0.5e-9, torch.Generator().manual_seed(0))
    try:
        for batch, single in ((parallel.jacobians(slowness), serial.jacobian),
                              (parallel.jacobians(slowness, subset), lambda model: serial.jacobian(model, subset)),
                              (parallel.linearization_kernels(slowness), serial.linearization_kernel)):
            assert parallel._model_pool is not None and len(batch) == 3
            for kernel, model in zip(batch, slowness):
                assert (kernel != single(model)).nnz == 0
        tangents = rng.normal(size=(3, small_grid.n_cells, 4))
        for index in (None, subset):  # only the products travel back from the workers
            products = parallel.jacobian_products(slowness, tangents, index)
            assert products.shape == (3, small_survey.n_data if index is None else len(index), 4)
            for product, model, tangent in zip(products, slowness, tangents):
                assert np.array_equal(product, serial.jacobian(model, index) @ tangent)
        with pytest.raises(GridError, match="tangents"):
            parallel.jacobian_products(slowness, tangents[:2])
        for unknowns in (None, FieldUnknowns()):
            problems = [build_problem(field, prior, op, FaciesVelocity(), unknowns=unknowns)
                        for op in (serial, parallel)]
            parameters = problems[0].sample_prior(3, torch.Generator().manual_seed(1)) if unknowns else latent
            expected = problems[0].jacobian(parameters)
            assert torch.equal(problems[1].jacobian(parameters), expected)
            one_by_one = [problems[0].jacobian(point[None])[0] for point in parameters]
            assert torch.equal(torch.stack(one_by_one), expected)
    finally:
        parallel.close()
