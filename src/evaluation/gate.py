"""The register step's quality gate: champion against challenger."""

from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    stage: str  # "production" or "candidate"
    reason: str

    @property
    def promote(self) -> bool:
        return self.stage == "production"


def quality_gate(bleu: float, threshold: float, champion_bleu: float | None, metric: str = "BLEU") -> GateDecision:
    """Promote only a model that clears the threshold AND beats the published champion.

    ``bleu`` is the task's gate metric (BLEU for translation, accuracy for classification; higher
    is better), named ``metric`` in the reason. ``champion_bleu`` is None when no model of this
    name is published (or none can be looked up, as in offline mode); then the threshold decides.
    """
    if bleu < threshold:
        return GateDecision("candidate", f"{metric} {bleu:.2f} is below the threshold {threshold:.2f}")
    if champion_bleu is not None and bleu <= champion_bleu:
        return GateDecision("candidate", f"{metric} {bleu:.2f} does not beat the published champion's {champion_bleu:.2f}")
    versus = "no published champion" if champion_bleu is None else f"beats the champion's {champion_bleu:.2f}"
    return GateDecision("production", f"{metric} {bleu:.2f} clears the threshold {threshold:.2f} and {versus}")
