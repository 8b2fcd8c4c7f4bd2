"""The inference server's settings: where it listens, what it accepts, how it batches
(``config/serving.yaml``)."""

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, ValidationError, confloat, conint, model_validator

from src.config.base import FrozenConfig
from src.config.base import ConfigError
from src.config.files import CONFIG_DIR, read_config_file

SERVING_CONFIG_PATH = CONFIG_DIR / "serving.yaml"


class ServingConfig(FrozenConfig):
    """Limits and micro-batching of ``python -m src.main serve``; every request is checked against them."""

    # a NaN or infinite timeout or window is a mistake, not a setting
    model_config = ConfigDict(allow_inf_nan=False)
    host: str = "127.0.0.1"
    port: conint(ge=0, le=65535) = 8000  # 0: any free port (serve logs the one it took)
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"  # onnx-int8: export --quantize int8
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA if present, else CPU
    max_texts_per_request: conint(ge=1) = 64
    max_chars_per_text: conint(ge=1) = 2000
    max_body_bytes: conint(ge=64) = 1_000_000
    # micro-batching: the first waiting request opens a window; what arrives in it runs in one model call
    batch_window_ms: confloat(ge=0.0, le=1000.0) = 5.0
    max_batch_size: conint(ge=1) = 32  # texts per model call; 1 turns micro-batching off
    default_beam: conint(ge=1) = 1
    max_beam: conint(ge=1) = 8
    default_new_tokens: conint(ge=1) = 100  # /v1/generate without max_new_tokens
    max_new_tokens: conint(ge=1) = 512
    model_fetch_timeout_s: confloat(gt=0.0) = 120.0  # a ClearML model: lookup and download, all of it
    graceful_shutdown_s: confloat(gt=0.0) = 30.0  # SIGTERM: how long requests in flight may still take
    # slow clients: each request (headers and body) must arrive within request_timeout_s (else 408, closed);
    # an idle keep-alive connection is closed after keep_alive_s; request line and headers over
    # max_header_bytes: 431 (or 400)
    request_timeout_s: confloat(gt=0.0, le=3600.0) = 15.0
    keep_alive_s: confloat(gt=0.0, le=3600.0) = 5.0
    max_header_bytes: conint(ge=1024) = 16384

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> "ServingConfig":
        if self.default_beam > self.max_beam:
            raise ValueError(f"default_beam={self.default_beam} exceeds max_beam={self.max_beam}")
        if self.default_new_tokens > self.max_new_tokens:
            raise ValueError(f"default_new_tokens={self.default_new_tokens} exceeds "
                             f"max_new_tokens={self.max_new_tokens}")
        if self.max_chars_per_text > self.max_body_bytes:
            raise ValueError(f"max_chars_per_text={self.max_chars_per_text} cannot fit in "
                             f"max_body_bytes={self.max_body_bytes}")
        return self


def load_serving_config(path: str | Path | None = None, **overrides: Any) -> ServingConfig:
    """``path`` (default ``config/serving.yaml``) with the non-None ``overrides`` (CLI flags) on top.

    Raises:
        ConfigError: naming each bad key with the expected and the actual value.
    """
    path = Path(path) if path is not None else SERVING_CONFIG_PATH
    data = {**read_config_file(path), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return ServingConfig.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                lines.append(f"  {loc}: unknown key (allowed: {', '.join(ServingConfig.model_fields)})")
            elif not e["loc"]:
                lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
            else:
                lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
        raise ConfigError(f"invalid serving config {path}:\n" + "\n".join(lines)) from None
