"""Config loading: defaults < YAML file < AVALUMA_* environment, and one readable error per mistake."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from avaluma.core.config import Config, ProviderRef
from avaluma.core.config_loader import load_config
from avaluma.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence --------------------------------------------------------------------------------------------------


def test_no_file_and_no_environment_gives_defaults() -> None:
    assert load_config(None, env={}) == Config()


def test_yaml_overrides_defaults_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9100\nrender:\n  fps: 30\nlipsync:\n  name: trained\n")
    config = load_config(path, env={})
    assert config.server.port == 9100
    assert config.server.host == Config().server.host
    assert config.render.fps == 30
    assert config.lipsync == ProviderRef(name="trained")


def test_environment_overrides_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9100\n  host: 0.0.0.0\n")
    config = load_config(path, env={"AVALUMA_SERVER__PORT": "9000", "AVALUMA_LIPSYNC__NAME": "energy"})
    assert config.server.port == 9000
    assert config.server.host == "0.0.0.0"
    assert config.lipsync.name == "energy"


def test_api_keys_are_comma_separated() -> None:
    config = load_config(env={"AVALUMA_API_KEYS": "alpha, beta,,gamma"})
    assert config.api_keys == ("alpha", "beta", "gamma")


def test_nested_sections_and_lists_inside_optional_sections() -> None:
    env = {"AVALUMA_AGENT__TTS__NAME": "piper", "AVALUMA_AGENT__AVATAR__ACCEPTED_SENDERS": "sender-a,sender-b"}
    config = load_config(env=env)
    assert config.agent.tts == ProviderRef(name="piper")
    assert config.agent.avatar is not None
    assert config.agent.avatar.accepted_senders == ("sender-a", "sender-b")
    assert config.agent.stt == Config().agent.stt


def test_partial_provider_override_keeps_the_configured_name(tmp_path: Path) -> None:
    path = write(tmp_path, "tts:\n  name: piper\n  options:\n    length_scale: 1.2\n")
    config = load_config(path, env={"AVALUMA_TTS__OPTIONS__VOICE": "joe-us"})
    assert config.tts == ProviderRef(name="piper", options={"length_scale": 1.2, "voice": "joe-us"})


def test_environment_can_configure_an_unset_provider() -> None:
    config = load_config(env={"AVALUMA_STT__NAME": "assemblyai"})
    assert config.stt == ProviderRef(name="assemblyai")


def test_avaluma_config_names_the_file_when_no_path_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "default_avatar: grace\n")
    assert load_config(env={"AVALUMA_CONFIG": str(path)}).default_avatar == "grace"


def test_process_variables_and_foreign_plain_variables_are_not_config_keys() -> None:
    env = {"AVALUMA_PLUGINS": "piper", "AVALUMA_LOG_LEVEL": "DEBUG", "AVALUMA_SOMETHING_ELSE": "x"}
    assert load_config(env=env) == Config()


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing yet\n"), env={}) == Config()


# --- errors ------------------------------------------------------------------------------------------------------


def test_unknown_yaml_key_names_file_key_and_valid_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  prot: 9000\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = err.value.message
    assert message.startswith(f"{path}: server.prot: unknown key (valid: host, port, ")
    assert "\n" not in message


def test_unknown_top_level_key_lists_top_level_keys(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"config\.yaml: avatar_dir: unknown key \(valid: server, render, avatars_dir"
    ):
        load_config(write(tmp_path, "avatar_dir: x\n"), env={})


def test_invalid_value_names_key_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml: server\.port: .*65535.*\(got 70000\)"):
        load_config(write(tmp_path, "server:\n  port: 70000\n"), env={})


def test_every_problem_is_reported_once_in_one_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "server:\n  prot: 1\nrender:\n  fps: 0\n"), env={})
    lines = err.value.message.splitlines()
    assert len(lines) == 2
    assert any("server.prot: unknown key" in line for line in lines)
    assert any("render.fps:" in line for line in lines)


def test_render_defaults_are_checked_as_render_options(tmp_path: Path) -> None:
    """Config, the front doors and the engine share one RenderOptions check: a rate that is no whole number of
    samples per frame is refused when the config loads, not when the first stream starts."""
    with pytest.raises(ConfigError, match=r"render: .*22050 Hz is not a multiple of fps 24"):
        load_config(write(tmp_path, "render:\n  fps: 24\n  audio_sample_rate: 22050\n"), env={})
    assert load_config(env={}).render.options().samples_per_frame == 24_000 // 25


def test_invalid_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^environment variable AVALUMA_SERVER__PORT \(server\.port\): .*'abc'"):
        load_config(env={"AVALUMA_SERVER__PORT": "abc"})


def test_unknown_nested_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"AVALUMA_SEVER__PORT: unknown key 'sever' \(valid: server, "):
        load_config(env={"AVALUMA_SEVER__PORT": "9000"})


def test_unknown_nested_key_from_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"AVALUMA_SERVER__PROT \(server\.prot\): unknown key \(valid: host, port"):
        load_config(env={"AVALUMA_SERVER__PROT": "9000"})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml was not found: pass an existing YAML file with --config"):
        load_config(tmp_path / "nope.yaml", env={})


def test_directory_instead_of_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, env={})


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml: not valid YAML at line 2, column 10: mapping values"):
        load_config(write(tmp_path, "render:\n  fps: 25: 30\n"), env={})


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- server\n"), env={})


# --- the documented example --------------------------------------------------------------------------------------


def _documented_keys(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of ``model`` (recursing into nested sections) that ``data`` does not mention."""
    missing = set()
    for name, field in model.model_fields.items():
        if name not in data:
            missing.add(prefix + name)
            continue
        for sub in (field.annotation, *typing.get_args(field.annotation)):  # Section and Section | None
            if isinstance(sub, type) and issubclass(sub, BaseModel) and sub is not ProviderRef and data[name]:
                missing |= _documented_keys(sub, data[name], f"{prefix}{name}.")
    return missing


def test_example_config_documents_every_key_with_its_default() -> None:
    path = ROOT / "config.example.yaml"
    assert _documented_keys(Config, yaml.safe_load(path.read_text())) == set()
    assert load_config(path, env={}) == Config()
