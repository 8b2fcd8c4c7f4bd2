"""The register step's quality gate: champion against challenger."""

from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    stage: str  # "production" or "candidate"
    reason: str

    @property
    def promote(self) -> bool:
        return self.stage == "production"


def quality_gate(value: float, threshold: float, champion: float | None, metric: str = "BLEU",
                 higher_is_better: bool = True) -> GateDecision:
    """Promote only a model that clears the threshold AND beats the published champion.

    ``value`` is the task's gate metric (BLEU for translation, accuracy for classification: higher
    is better; bits per character for language modelling: ``higher_is_better=False``), named
    ``metric`` in the reason; ``threshold`` and ``champion`` are on the same scale. ``champion`` is
    None when no model of this name is published (or none can be looked up, as in offline mode);
    then the threshold decides.
    """
    if not higher_is_better:
        return _lower_is_better_gate(value, threshold, champion, metric)
    if value < threshold:
        return GateDecision("candidate", f"{metric} {value:.2f} is below the threshold {threshold:.2f}")
    if champion is not None and value <= champion:
        return GateDecision("candidate",
                            f"{metric} {value:.2f} does not beat the published champion's {champion:.2f}")
    versus = "no published champion" if champion is None else f"beats the champion's {champion:.2f}"
    return GateDecision("production",
                        f"{metric} {value:.2f} clears the threshold {threshold:.2f} and {versus}")


def _lower_is_better_gate(value: float, threshold: float, champion: float | None,
                          metric: str) -> GateDecision:
    if value > threshold:
        return GateDecision("candidate", f"{metric} {value:.3f} is above the threshold {threshold:.3f}")
    if champion is not None and value >= champion:
        return GateDecision("candidate",
                            f"{metric} {value:.3f} does not beat the published champion's {champion:.3f}")
    versus = "no published champion" if champion is None else f"beats the champion's {champion:.3f}"
    return GateDecision("production",
                        f"{metric} {value:.3f} is within the threshold {threshold:.3f} and {versus}")
