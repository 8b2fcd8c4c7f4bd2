"""ServingConfig: config/serving.yaml holds the model's defaults; bad values are refused with expected and
actual."""

import pytest

from src.config import ConfigError
from src.config.serving import SERVING_CONFIG_PATH, ServingConfig, load_serving_config


def test_the_documented_file_states_exactly_the_defaults():
    from src.config.files import read_config_file

    # every key documented
    assert set(read_config_file(SERVING_CONFIG_PATH)) == set(ServingConfig.model_fields)
    assert load_serving_config() == ServingConfig()


def test_flags_override_the_file_and_none_keeps_it(tmp_path):
    path = tmp_path / "serving.yaml"
    path.write_text("port: 9000\nmax_batch_size: 1\n")
    config = load_serving_config(path, host="0.0.0.0", port=None, backend="onnx")
    assert (config.host, config.port, config.backend, config.max_batch_size) == ("0.0.0.0", 9000, "onnx", 1)


@pytest.mark.parametrize(("text", "message"), [
    ("max_texts: 3\n", "max_texts: unknown key (allowed: host, port"),
    ("port: 70000\n", "port: Input should be less than or equal to 65535 (got 70000)"),
    ("backend: tensorrt\n", "backend: Input should be 'torch', 'onnx' or 'onnx-int8' (got 'tensorrt')"),
    ("device: gpu\n", "device: Input should be 'auto', 'cpu' or 'cuda' (got 'gpu')"),
    ("default_beam: 5\nmax_beam: 4\n", "default_beam=5 exceeds max_beam=4"),
    ("default_new_tokens: 600\n", "default_new_tokens=600 exceeds max_new_tokens=512"),
    ("max_chars_per_text: 5000\nmax_body_bytes: 4000\n",
     "max_chars_per_text=5000 cannot fit in max_body_bytes=4000"),
    ("batch_window_ms: -1\n", "batch_window_ms: Input should be greater than or equal to 0"),
    ("graceful_shutdown_s: .inf\n", "graceful_shutdown_s: Input should be a finite number (got inf)"),
    ("batch_window_ms: .nan\n", "batch_window_ms: Input should be a finite number (got nan)"),
    ("request_timeout_s: 0\n", "request_timeout_s: Input should be greater than 0"),
    ("max_header_bytes: 10\n", "max_header_bytes: Input should be greater than or equal to 1024"),
])
def test_bad_values_name_the_key_and_what_was_expected(tmp_path, text, message):
    path = tmp_path / "serving.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="invalid serving config") as err:
        load_serving_config(path)
    assert message in str(err.value)


def test_the_config_is_frozen():
    with pytest.raises(Exception, match="frozen"):
        ServingConfig().port = 1  # type: ignore[misc]
