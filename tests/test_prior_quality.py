"""The prior quality report: it passes what it should and flags deliberately bad priors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geoinv import ConfigError, PriorReport, prior_report
from geoinv.cli import main
from geoinv.prior import VAE, default_training_image, default_vae, write_image
from geoinv.prior.quality import QualityCheck

SMALL = {"n_samples": 80, "n_heldout": 60}


@pytest.fixture(scope="module")
def shipped():
    return default_vae()


@pytest.fixture(scope="module")
def image():
    return default_training_image()


def test_the_shipped_prior_reconstructs_and_matches_its_training_image(shipped, image):
    report = prior_report(shipped, image, **SMALL)
    assert report["heldout_accuracy"].passed and report["heldout_accuracy"].value > 0.97
    assert report["proportion_gap"].passed
    assert report["binary_like"].passed
    assert report.settings["same_image"] is True
    assert len(report.curves["prior_variogram_x"]) == shipped.model_shape[1] // 2
    assert "held-out reconstruction accuracy" in report.summary()
    # measured facts of the shipped prior and image: its draws vary less in channel proportion than
    # the image's crops (0.05 against 0.13), and the image's bottom rows hold fewer channels (0.18 / 0.27)
    assert report["proportion_spread"].value < 0.6 * report["proportion_spread"].reference
    assert report["heldout_proportion"].value < report["heldout_proportion"].reference - 0.05
    assert "note: the held-out rows hold" in report.summary()


def test_the_held_out_note_appears_only_where_the_held_out_rows_differ():
    def summary(heldout: float) -> str:
        check = QualityCheck("heldout_proportion", "held-out crops: channel proportion", heldout, 0.30)
        return PriorReport([check], {}, np.zeros((0, 1, 1)), np.zeros((0, 1, 1))).summary()

    assert "held-out rows" not in summary(0.32)
    assert summary(0.20).startswith("note: the held-out rows hold 0.200 channels against the training crops' 0.300")


def test_a_failing_vertical_variogram_with_alike_draws_gets_the_spread_advice():
    def advice(spread: float) -> list[str]:
        checks = [QualityCheck("variogram_z_gap", "variogram z", 0.15, None, "<= 0.1", False),
                  QualityCheck("proportion_spread", "spread", spread, 0.126)]
        return PriorReport(checks, {}, np.zeros((0, 1, 1)), np.zeros((0, 1, 1))).advice

    assert any("--proportion-spread-weight 1" in line for line in advice(0.052))
    assert advice(0.11) == []  # draws as varied as the crops: the spread is not the cause


def test_an_untrained_prior_is_flagged(image, shipped):
    torch.manual_seed(0)
    untrained = VAE(shipped.config)
    report = prior_report(untrained, image, **SMALL)
    assert not report.passed
    failed = {check.name for check in report.failures}
    assert {"heldout_accuracy", "binary_like"} <= failed
    assert report["heldout_accuracy"].value < 0.9
    assert report.settings["same_image"] is None  # an untrained model records no image


def test_a_prior_of_the_other_polarity_is_flagged(shipped, image):
    """The shipped prior against the image with channels and matrix swapped: as if trained on the
    inverted polarity, its channel proportion and reconstructions are wrong."""
    report = prior_report(shipped, 1 - image, **SMALL)
    failed = {check.name for check in report.failures}
    assert {"heldout_accuracy", "proportion_gap"} <= failed
    assert report["proportion_gap"].value > 0.3
    assert report.settings["same_image"] is False
    assert report.summary().startswith("note: this image is not the one the prior was trained on")


def test_bad_report_settings_are_refused(shipped):
    with pytest.raises(ConfigError, match="at least the prior's model shape"):
        prior_report(shipped, np.zeros((50, 50)))
    with pytest.raises(ConfigError, match="n_samples"):
        prior_report(shipped, np.zeros((300, 300)), n_samples=0)


def test_prior_report_command_writes_json_and_figure_and_refuses_to_replace(tmp_path, image, capsys):
    inverted = tmp_path / "inverted.npy"
    write_image(inverted, 1 - image[:1400, :600])  # tall enough for the held-out rows
    output = tmp_path / "report.json"
    base = ["prior-report", str(default_vae_path()), "--image", str(inverted), "--samples", "60",
            "--inversion-crops", "0", "--output", str(output)]
    with pytest.warns(UserWarning, match="Is the polarity inverted"):
        assert main(base) == 0
    text = capsys.readouterr().out
    assert "WARN" in text and "wrote" in text
    data = json.loads(output.read_text())
    assert data["passed"] is False and {c["name"] for c in data["checks"]} >= {"heldout_accuracy", "binary_like"}
    assert output.with_suffix(".png").stat().st_size > 10_000
    assert main(base) == 2  # exists: not replaced without --overwrite
    assert "exists" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="polarity"):
        assert main([*base, "--overwrite", "--strict"]) == 4


def default_vae_path():
    from geoinv.prior import DEFAULT_VAE

    return DEFAULT_VAE


def test_train_vae_writes_the_quality_report_beside_its_checkpoint(tmp_path, capsys):
    from geoinv.prior import channelized_image

    image = tmp_path / "ti.npy"
    write_image(image, channelized_image((400, 200), seed=3))
    checkpoint = tmp_path / "prior.pt"
    assert main(["train-vae", "--image", str(image), "--checkpoint", str(checkpoint), "--steps", "2", "--nz", "32",
                 "--nx", "32", "--latent-dim", "2", "--report-samples", "50"]) == 0
    report = json.loads((tmp_path / "prior.report.json").read_text())
    assert report["passed"] is False  # two steps: far from the goals
    assert report["settings"]["same_image"] is True and report["settings"]["n_samples"] == 50
    assert (tmp_path / "prior.report.png").exists()
    assert "held-out reconstruction accuracy" in capsys.readouterr().out


def test_inversion_check_inverts_held_out_crops_and_marks_the_median(tmp_path):
    from geoinv.prior import channelized_image
    from geoinv.workflows import check_survey, inversion_check

    from .helpers import TinyDecoder

    prior = TinyDecoder((20, 12), latent_dim=3)
    survey, grid = check_survey(prior.model_shape)
    assert grid.shape == (20, 12) and survey.n_data == 9
    np.testing.assert_allclose(survey.sources[:, 0], 0.0)
    np.testing.assert_allclose(survey.receivers[:, 0], 1.2)
    image = channelized_image((400, 200), seed=1)
    check = inversion_check(prior, image, n_crops=2, n_candidates=2)
    assert len(check["crops"]) == 2
    rmse = [crop["model_rmse"] for crop in check["crops"]]
    assert all(0 <= value <= 1 for value in rmse) and check["median_model_rmse"] == pytest.approx(np.median(rmse))
    assert np.isfinite(check["median_sigma"]) and check["median_sigma"] > 0
    assert all(np.isfinite(crop["refined_sigma"]) and 0 <= crop["refined_model_rmse"] <= 1 for crop in check["crops"])
    assert check["median_refined_rmse"] == pytest.approx(np.median([crop["refined_model_rmse"]
                                                                    for crop in check["crops"]]))
    report = PriorReport([], {}, np.zeros((1, 20, 12)), np.zeros((1, 20, 12)))
    report.add_inversion_check({**check, "median_model_rmse": 0.3, "median_refined_rmse": 0.1})
    assert report["inversion_model_rmse"].passed is False and report["inversion_sigma"].passed is None
    assert report["inversion_refined_rmse"].passed is None  # the prior's own RMSE is the marked one
    assert report.settings["inversion_check"]["crops"] == check["crops"]
    assert check["median_model_rmse_se"] >= 0
    assert "standard error" in report.summary()
    unrefined = inversion_check(prior, image, n_crops=1, n_candidates=2, refine=False)
    assert "median_refined_rmse" not in unrefined and "refined_sigma" not in unrefined["crops"][0]
    assert unrefined["crops"][0]["model_rmse"] == check["crops"][0]["model_rmse"]  # the same candidates
    with pytest.raises(ConfigError, match="n_crops"):
        inversion_check(prior, image, n_crops=0)


def test_median_standard_error_is_the_bootstrap_spread_of_the_median():
    from geoinv.workflows import median_standard_error

    assert median_standard_error([0.2] * 7) == pytest.approx(0.0, abs=1e-12)
    values = np.random.default_rng(1).normal(0.15, 0.05, 400)  # the median's SE: 1.2533 σ / √n
    assert median_standard_error(values) == pytest.approx(1.2533 * 0.05 / 20, rel=0.35)  # bootstrap: ~n^-1/4
    assert median_standard_error(values, seed=3) != median_standard_error(values, seed=4)


def _report_failing_heldout(accuracy: float, history: list[float], latent_dim: int = 20) -> PriorReport:
    from geoinv.prior.quality import QualityCheck, heldout_trend

    checks = [QualityCheck("heldout_accuracy", "held-out", accuracy, None, ">= 0.97", accuracy >= 0.97),
              QualityCheck("binary_like", "binary", 0.95, 0.97, ">= 0.9", True)]
    settings = {"latent_dim": latent_dim, "heldout_trend": heldout_trend({"heldout_accuracy": history})}
    return PriorReport(checks, {}, np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), settings)


def test_the_report_advises_on_a_held_out_accuracy_that_levelled_off_or_still_rises():
    # s42's second image, one hour of one core: +0.006 from the first half of evaluations to the second
    levelled = list(np.linspace(0.77, 0.79, 11)) + list(np.linspace(0.791, 0.796, 11))
    advice = _report_failing_heldout(0.795, levelled).advice
    assert len(advice) == 1 and "levelled off" in advice[0] and "--latent-dim 64" in advice[0]
    assert "--latent-dim 64" not in _report_failing_heldout(0.795, levelled, latent_dim=64).advice[0]
    rising = list(np.linspace(0.90, 0.93, 10)) + list(np.linspace(0.93, 0.96, 10))
    advice = _report_failing_heldout(0.96, rising).advice
    assert len(advice) == 1 and "still rising" in advice[0]
    assert _report_failing_heldout(0.975, levelled).advice == []  # the mark is met: nothing to advise
    assert _report_failing_heldout(0.795, levelled[:4]).advice == []  # too few evaluations to judge a trend
    report = _report_failing_heldout(0.795, levelled)
    assert report.summary().splitlines()[-1].startswith("advice: held-out accuracy has levelled off")
    assert report.to_dict()["advice"] == report.advice


def test_an_untrained_prior_is_advised_to_sharpen_its_samples(image, shipped):
    torch.manual_seed(0)
    report = prior_report(VAE(shipped.config), image, **SMALL)
    assert report.settings["heldout_trend"] is None  # no training history: no held-out trend to judge
    assert any("--adversarial 1" in line for line in report.advice)
    report.settings["training"]["adversarial"] = 1.0  # trained with the term already: train longer instead
    assert any("despite the adversarial term" in line for line in report.advice)
