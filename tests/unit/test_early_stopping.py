"""Early stopping keeps the best epoch's weights and stops after `patience` stale epochs."""

from __future__ import annotations

import torch

from ml.early_stopping import EarlyStopping


def test_stops_after_patience_and_restores_best_weights() -> None:
    model = torch.nn.Linear(2, 1)
    stopper = EarlyStopping(2, better=lambda new, best: new < best)  # a loss: lower is better
    stops = []
    for epoch, loss in enumerate([1.0, 0.5, 0.7, 0.6, 0.4]):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        stops.append(stopper.update(model, loss))
        if stops[-1]:
            break
    assert stops == [False, False, False, True]  # 0.7 and 0.6 are no better than 0.5
    stopper.restore(model)
    assert torch.all(model.weight == 1.0) and stopper.best == 0.5


def test_tuple_scores_higher_is_better_and_restore_before_update_is_noop() -> None:
    model = torch.nn.Linear(1, 1)
    before = model.weight.clone()
    EarlyStopping(3).restore(model)
    assert torch.equal(model.weight, before)
    stopper = EarlyStopping(1)
    assert not stopper.update(model, (0.9, -0.3))
    assert not stopper.update(model, (0.9, -0.2))  # same accuracy, lower loss: better
    assert stopper.update(model, (0.8, -0.1))
