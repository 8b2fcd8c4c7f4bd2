"""Test-set metrics (loss, perplexity, accuracy, BLEU, chrF) and the registration quality gate."""
