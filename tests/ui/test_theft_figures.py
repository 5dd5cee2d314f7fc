"""Figures of the ownership and detection parts of model theft: PRADA's distances with the alarm marked, and the
watermark's key accuracy per model against chance."""

from __future__ import annotations

import pytest
import torch

from dlsec_core.studies.ownership import NullModel, OwnershipStudyResult, SurvivalCheck
from dlsec_core.theft.prada import PradaConfig, prada
from dlsec_core.theft.watermark import WatermarkVerdict
from dlsec_ui import figures


def _stream(close: bool) -> tuple[torch.Tensor, list[int]]:
    """60 queries of one class: random points, or (close) tiny steps from one point (synthetic queries)."""
    gen = torch.Generator().manual_seed(0)
    if close:
        base = torch.rand(1, 16, generator=gen)
        steps = torch.cumsum(0.01 * torch.sign(torch.randn(60, 16, generator=gen)), dim=0)
        return base + steps, [0] * 60
    return torch.rand(60, 16, generator=gen), [0] * 60


def test_prada_chart_marks_the_first_alarm() -> None:
    config = PradaConfig(min_distances=20, delta=0.95)
    result = prada(*_stream(close=True), config)
    assert result.first_alarm is not None
    fig = figures.prada_distances(result)
    points = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in points) == 59  # every query but the class's first has a distance
    (w,) = [t for t in fig.data if t.name == "W"]
    assert list(w.x) == [i + 1 for i, _ in result.tests] and list(w.y) == [v for _, v in result.tests]
    alarms = [s for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1 == result.first_alarm + 1]
    assert len(alarms) == 2  # on both rows
    assert any(f"alarm at query {result.first_alarm + 1}" in a.text for a in fig.layout.annotations)
    assert any(s.y0 == s.y1 == 0.95 for s in fig.layout.shapes)  # δ


def test_prada_chart_without_alarm_has_no_alarm_line() -> None:
    result = prada(*_stream(close=False), PradaConfig(min_distances=20, delta=0.01))
    assert result.first_alarm is None
    fig = figures.prada_distances(result)
    assert not any(s.x0 == s.x1 and s.type == "line" for s in fig.layout.shapes)
    assert not any("alarm" in (a.text or "") for a in fig.layout.annotations)


def _verdict(hits: int, nulls: list[float], p: float) -> WatermarkVerdict:
    return WatermarkVerdict(
        keys=50, hits=hits, null_key_accuracies=nulls, p0_measured=0.08, p0=0.1, chance=0.1, p_value=p,
        empirical_p=0.2, alpha=1e-3,
    )  # fmt: skip


def test_watermark_chart_colours_found_and_not_found() -> None:
    nulls = [0.08, 0.1]
    result = OwnershipStudyResult(
        owner_id="a" * 12, owner_name="owner", suspect_id="b" * 12, suspect_name="copy", keys=50, key_kind="noise",
        null_models=[NullModel(seed=s, test_accuracy=0.95, key_accuracy=a) for s, a in zip((1, 2), nulls, strict=True)],
        owner=_verdict(50, nulls, 1e-50), suspect=_verdict(5, nulls, 0.5), suspect_accuracy=0.9,
        survival=[SurvivalCheck(kind="prune", description="pruned", parameter=0.5, test_accuracy=0.9,
                                verdict=_verdict(49, nulls, 1e-47)),
                  SurvivalCheck(kind="extraction", description="stolen", label="stolen: knockoff, 1,000 queries",
                                parameter=1000, test_accuracy=0.9, fidelity=0.95, verdict=_verdict(5, nulls, 0.5))],
    )  # fmt: skip
    fig = figures.watermark_key_accuracy(result)
    (bars,) = fig.data
    assert list(bars.x) == [0.08, 0.1, 1.0, 0.1, 0.98, 0.1]
    assert list(bars.marker.color) == [
        "#9D9D9D",
        "#9D9D9D",
        "#54A24B",
        figures.ADV_COLOR,
        "#54A24B",
        figures.ADV_COLOR,
    ]
    # a run made before survival checks had labels; a copy stolen from the owner is the owner's, not the suspect's
    assert list(bars.y[-2:]) == ["suspect prune 0.5", "owner's copy stolen: knockoff, 1,000 queries"]
    assert any(s.x0 == s.x1 == 0.1 for s in fig.layout.shapes)  # chance


def test_transfer_chart_draws_success_as_one_minus_accuracy() -> None:
    white = [{"eps": 0.0, "accuracy": 0.9, "norm": "linf"}, {"eps": 0.1, "accuracy": 0.1, "norm": "linf"}]
    stolen = [{"eps": 0.0, "accuracy": 0.9, "norm": "linf"}, {"eps": 0.1, "accuracy": 0.6, "norm": "linf"}]
    fig = figures.transfer_vs_whitebox({"white-box PGD": white, "transfer from the stolen model": stolen})
    assert [t.name for t in fig.data] == ["white-box PGD", "transfer from the stolen model"]
    assert list(fig.data[0].y) == pytest.approx([0.1, 0.9]) and list(fig.data[1].y) == pytest.approx(
        [0.1, 0.4]
    )
    assert list(fig.data[1].x) == [0.0, 0.1] and "L∞" in fig.layout.xaxis.title.text
