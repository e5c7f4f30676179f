import pickle

import numpy as np
import pytest

from tests.conftest import SEED, need
from xai_jax.study.data.mnist1d import load_mnist1d


def test_default_equals_study_pickle(mnist1d):
    with open(need(SEED / "MNIST1D.pkl"), "rb") as f:
        ref = pickle.load(f)
    assert mnist1d.x_train.shape == (4000, 40, 1) and mnist1d.x_train.dtype == np.float32
    assert mnist1d.x_test.shape == (1000, 40, 1)
    np.testing.assert_allclose(mnist1d.x_train[..., 0], ref["x"], atol=1e-6)
    np.testing.assert_allclose(mnist1d.x_test[..., 0], ref["x_test"], atol=1e-6)
    np.testing.assert_array_equal(mnist1d.y_train, ref["y"])
    np.testing.assert_array_equal(mnist1d.y_test, ref["y_test"])


def test_supports_contiguous_and_sized_as_generator_implies(mnist1d):
    s = np.concatenate([mnist1d.support_train, mnist1d.support_test])
    lengths = s.sum(1)
    # 12-sample template padded by 36..60 zeros, stretched to 72 samples, resampled to 40:
    # it covers 40 * 12 / (12 + p) ~ 6.7..10 samples, plus at most one interpolation sample.
    assert lengths.min() >= 6 and lengths.max() <= 11
    for row in s:
        idx = np.flatnonzero(row)
        assert np.all(np.diff(idx) == 1)


def test_support_is_where_the_signal_is_not_noise(mnist1d):
    # Outside the support the signal is smooth noise + shear; the template has the large
    # excursions. The mean |x - linear trend| inside the support must exceed the outside.
    x, s = mnist1d.x_test[..., 0], mnist1d.support_test
    inside = np.abs(x[s]).mean()
    outside = np.abs(x[~s]).mean()
    assert inside > outside


def test_same_seed_same_data_other_seed_differs(tmp_path):
    a = load_mnist1d(seed=3, num_samples=200, cache_dir=tmp_path)
    b = load_mnist1d(seed=3, num_samples=200, cache_dir=None)
    c = load_mnist1d(seed=4, num_samples=200, cache_dir=None)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.support_test, b.support_test)
    assert a.x_train.shape == (160, 40, 1)
    assert not np.allclose(a.x_train, c.x_train)
    assert list(tmp_path.glob("*.tmp")) == []


def test_unwritable_cache_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cache_dir"):
        load_mnist1d(num_samples=100, cache_dir=blocker / "sub")


def test_bad_arguments():
    with pytest.raises(ValueError, match="train_split"):
        load_mnist1d(train_split=1.5, cache_dir=None)
    with pytest.raises(TypeError, match="seed"):
        load_mnist1d(seed="42", cache_dir=None)


def test_support_any_is_a_superset_larger_at_the_edges(tmp_path):
    """support="any" (any template contribution) contains "majority" (> 0.5) and extends it
    by at most one position at each end; the generator's own region decides both."""
    a = load_mnist1d(cache_dir=tmp_path)
    b = load_mnist1d(cache_dir=tmp_path, support="any")
    np.testing.assert_array_equal(a.x_test, b.x_test)
    sa = np.concatenate([a.support_train, a.support_test])
    sb = np.concatenate([b.support_train, b.support_test])
    assert not (sa & ~sb).any()
    grown = (sb & ~sa).sum(1)
    assert grown.max() <= 2 and (grown > 0).sum() == 2195
    for row_a, row_b in zip(sa[grown > 0][:50], sb[grown > 0][:50]):
        ia, ib = np.flatnonzero(row_a), np.flatnonzero(row_b)
        assert ib[0] >= ia[0] - 1 and ib[-1] <= ia[-1] + 1 and np.all(np.diff(ib) == 1)
    with pytest.raises(ValueError, match="support must be one of"):
        load_mnist1d(cache_dir=tmp_path, support="all")


def test_old_format_cache_is_rebuilt(tmp_path):
    """A cache without the current format tag (e.g. one support kind only) is regenerated."""
    load_mnist1d(num_samples=100, cache_dir=tmp_path)
    file = next(tmp_path.glob("*.npz"))
    with np.load(file) as z:
        old = {k: z[k] for k in z.files if not k.startswith("support_any") and k != "arg_format"}
    np.savez(file, **old)
    with pytest.warns(UserWarning, match="format"):
        again = load_mnist1d(num_samples=100, cache_dir=tmp_path, support="any")
    assert again.support_test.shape == (20, 40)
