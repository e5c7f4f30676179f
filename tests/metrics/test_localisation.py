"""Localisation metrics (pointing game, relevance mass, AUROC) on maps whose support is known."""

import numpy as np
import pytest

from xai_jax.metrics import localisation_auroc, pointing_game, relevance_mass


def test_localisation_perfect_inverted_random():
    rng = np.random.default_rng(0)
    support = np.zeros((200, 40), bool)
    for i, s in enumerate(rng.integers(0, 30, 200)):
        support[i, s:s + 8] = True
    perfect = support.astype(float) + 0.01 * rng.random((200, 40))
    assert pointing_game(perfect, support).mean == 1.0
    np.testing.assert_allclose(relevance_mass(support.astype(float), support), 1.0)
    np.testing.assert_allclose(localisation_auroc(perfect, support), 1.0)
    np.testing.assert_allclose(localisation_auroc(-perfect, support), 0.0)
    random = rng.random((200, 40))
    assert abs(localisation_auroc(random, support).mean - 0.5) < 0.03
    assert abs(relevance_mass(random, support).mean - 0.2) < 0.03
    assert abs(pointing_game(random, support).mean - 0.2) < 0.08
    with pytest.raises(ValueError, match="same shape"):
        pointing_game(random[:, :39], support)


def test_localisation_offsets_ties_and_signs():
    support = np.zeros((3, 10), bool)
    support[:, 2:5] = True
    g = support.astype(float)
    offset = 5.0 + g  # an all-positive map with a constant offset
    np.testing.assert_allclose(relevance_mass(offset, support), (3 * 6.0) / (3 * 6.0 + 7 * 5.0))
    np.testing.assert_allclose(relevance_mass(offset, support, shift="min"), 1.0)
    np.testing.assert_allclose(localisation_auroc(offset, support), 1.0)  # AUROC ignores offsets
    # a constant map: every position ties at the maximum; the expectation is the support's share
    np.testing.assert_allclose(pointing_game(np.zeros((3, 10)), support), 0.3)
    two = np.zeros((3, 10))
    two[:, [0, 3]] = 1.0  # one tied maximum inside, one outside
    np.testing.assert_allclose(pointing_game(two, support), 0.5)
    # signed: negative evidence inside the support ranks below noise unless the magnitude is used
    signed = np.where(support, -2.0, 0.1) * np.r_[1.0, 1.2, 1.1][:, None]
    assert np.asarray(localisation_auroc(signed, support)).max() == 0.0
    np.testing.assert_allclose(localisation_auroc(np.abs(signed), support), 1.0)
    with pytest.raises(ValueError, match="shift must be one of"):
        relevance_mass(offset, support, shift="mean")
