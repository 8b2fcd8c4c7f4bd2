"""Where ``bash .ci/install`` caches the data that no Debian package installs: the IMDB reviews,
Austen's novels and the Brown corpus."""

import os
from pathlib import Path


def data_root() -> Path:
    """``$STEPWISE_DATA_DIR``, default ``~/.cache/stepwise-transformers``."""
    default = Path.home() / ".cache" / "stepwise-transformers"
    return Path(os.environ.get("STEPWISE_DATA_DIR") or default).expanduser()
