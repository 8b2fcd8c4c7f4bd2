"""stepwise-transformers: an educational encoder-decoder Transformer run as a ClearML pipeline."""
