"""Tools that measure training rather than run it: tracking overhead, tuning sweeps (run as python -m src.tuning.<tool>)."""
