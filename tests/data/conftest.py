"""Tiny corpora written into tmp_path; no test here touches the network."""

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from data_fixtures import DING_TEXT, NOT_UTF8_LINE  # noqa: E402

from src.config.data import DataConfig  # noqa: E402


@pytest.fixture
def ding_file(tmp_path: Path) -> Path:
    path = tmp_path / "de-en"
    path.write_bytes(DING_TEXT.encode("utf-8") + NOT_UTF8_LINE)
    return path


@pytest.fixture
def ding_cfg(ding_file: Path) -> DataConfig:
    return DataConfig(source="ding", ding_path=str(ding_file))
