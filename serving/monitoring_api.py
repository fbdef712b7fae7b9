"""The service's /monitoring answer: the latest verdict and figures, read from the monitoring file
the weekly job (or `churn monitor`) wrote into the scores folder. Nothing is computed at request
time: the file is re-read only when it changes."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from serving.monitoring_job import MONITORING_FILE

TOP_DRIFT_ROWS = 10


class MonitoringRequest(BaseModel):
    """No parameters: /monitoring answers for the latest monitored partition."""


NO_MONITORING_PARAMETERS = MonitoringRequest()


class DriftRow(BaseModel):
    feature: str = Field(description="Feature name, or churn_probability for the score.")
    psi: float | None = Field(description="Population stability index against training.")
    psi_band: str = Field(description="stable (< 0.1), moderate (0.1-0.25) or major (>= 0.25).")
    drifted: bool = Field(description="PSI of 0.25 or more, and more than one training date "
                          "differed from all of them by.")  # fmt: skip
    test: str = Field(description="ks (numbers) or chi2 (categories).")
    p_value: float | None = Field(description="The test's p-value (small at any size of shift "
                                  "when there are many customers).")  # fmt: skip
    missing_current: float | None = Field(description="Share of missing values in the partition.")
    top: bool = Field(description="One of the model's most important features, or the score.")


class PartitionVerdict(BaseModel):
    as_of: date = Field(description="Run date of the scored partition.", examples=["2024-12-01"])
    verdict: str = Field(description="fine, watch or retrain.", examples=["watch"])
    reasons: list[str] = Field(description="Why, the most serious first.")
    matured: bool = Field(description="Whether its label horizon has passed (realized figures).")
    model_version: str
    realized_rate: float | None = Field(None, description="Realized churn in the horizon.")
    predicted_rate: float | None = Field(None, description="Mean predicted probability.")
    realized_roc_auc: float | None = None
    expected_roc_auc: float | None = Field(None, description="CBPE estimate of the ROC AUC.")
    psi_max: float | None = Field(
        None,
        description="Largest PSI over the features the verdict reads (not those that grow "
        "with the export's age).",
    )


class MonitoringResponse(BaseModel):
    available: bool = Field(description="False until monitoring has run for this scores folder.")
    message: str = Field("", description="What to do when nothing is available.")
    generated_at: datetime | None = None
    latest: PartitionVerdict | None = None
    realized: dict[str, float | None] | None = Field(
        None, description="Latest matured partition's realized metrics (ROC AUC, PR AUC, lift, "
        "Brier, calibration error, churn rates with intervals).",
    )  # fmt: skip
    realized_as_of: date | None = None
    expected: dict[str, float | None] | None = Field(
        None, description="CBPE for the latest partition: expected ROC AUC and churn rate with "
        "their intervals.",
    )  # fmt: skip
    backtest: dict[str, float | None] | None = Field(
        None, description="The model's backtest figures (with 95 % interval bounds)."
    )
    drifted_features: list[str] = Field(default_factory=list)
    drift: list[DriftRow] = Field(default_factory=list, description="Largest PSI first.")
    history: list[PartitionVerdict] = Field(default_factory=list, description="Oldest first.")


def _verdict(entry: dict) -> PartitionVerdict:
    realized, expected = entry.get("realized") or {}, entry.get("expected") or {}
    return PartitionVerdict(
        as_of=entry["as_of"],
        verdict=entry["verdict"],
        reasons=entry.get("reasons", []),
        matured=entry["matured"],
        model_version=str(entry.get("model_version", "")),
        realized_rate=realized.get("realized_rate"),
        predicted_rate=expected.get("churn_rate"),
        realized_roc_auc=realized.get("roc_auc"),
        expected_roc_auc=expected.get("roc_auc"),
        psi_max=entry.get("psi_max"),
    )


class MonitoringFile:
    """The scores folder's monitoring file, parsed once per change (mtime)."""

    def __init__(self, scores_dir: str | Path):
        self.path = Path(scores_dir) / MONITORING_FILE
        self._stamp: float | None = None
        self._answer: MonitoringResponse | None = None

    def answer(self) -> MonitoringResponse:
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            return MonitoringResponse(
                available=False,
                message=f"no monitoring yet in {self.path.parent}: it is written by `churn score` "
                "and `churn monitor`",
            )
        if stamp != self._stamp or self._answer is None:
            try:
                answer = monitoring_response(self.path.read_text())
            except (OSError, ValueError, KeyError, TypeError) as err:  # a broken file: say so
                answer = MonitoringResponse(
                    available=False,
                    message=f"the monitoring file {self.path} cannot be read: {err}",
                )
            self._answer, self._stamp = answer, stamp
        return self._answer


def monitoring_response(text: str) -> MonitoringResponse:
    """The answer from the monitoring file's text."""
    import json

    document = json.loads(text)
    entries = document.get("partitions") or []
    if not entries:
        return MonitoringResponse(available=False, message="the monitoring file has no partitions")
    latest = entries[-1]
    matured = [e for e in entries if e.get("realized")]
    rows = [
        DriftRow(**{k: row.get(k) for k in DriftRow.model_fields})
        for row in (latest.get("drift") or [])[:TOP_DRIFT_ROWS]
    ]
    return MonitoringResponse(
        available=True,
        generated_at=document.get("generated_at"),
        latest=_verdict(latest),
        realized=matured[-1]["realized"] if matured else None,
        realized_as_of=matured[-1]["as_of"] if matured else None,
        expected=latest.get("expected"),
        backtest=latest.get("backtest"),
        drifted_features=latest.get("drifted_features", []),
        drift=rows,
        history=[_verdict(e) for e in entries],
    )
