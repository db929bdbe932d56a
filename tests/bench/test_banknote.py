"""The banknote benchmark setting of ``pyro_unlearn.bench``, skipped unless its data are present."""

import pytest
import torch


def test_banknote_setting_when_the_data_are_present():
    from pyro_unlearn.bench import banknote

    if not banknote.DATA.exists():
        pytest.skip(f"banknote data not at {banknote.DATA} (benchmarks only)")
    model, X, y, forget_ids, keep = banknote.setting(0)
    assert X.shape == (1372, 5) and torch.all(X[:, -1] == 1)
    assert int(y.sum()) == 610 and len(forget_ids) == 412 and int(keep.sum()) == 960
    assert len(set(forget_ids.tolist())) == 412
