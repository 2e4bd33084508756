"""Plugin loading and the provider registry: registration, lookup errors, options, isolation of broken plugins.

Unit tests never load installed plugins: managers are built with ``entry_points=False`` and plugin objects are
registered by hand, or ``_entry_points`` is pointed at a distribution written into ``tmp_path``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from avaluma.core import hookspecs, plugins
from avaluma.core.config import Config, ProviderRef
from avaluma.core.errors import ConfigError, FailedPrecondition
from avaluma.core.hookspecs import Register, hookimpl
from avaluma.core.plugins import (
    KIND_HOOKS,
    PluginManager,
    ProviderRegistry,
    load_plugin_manager,
    load_registry,
)


class VoiceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    voice: str = "default"
    speed: float = Field(1.0, gt=0)


class FakeTTS:
    def __init__(self, options: VoiceOptions) -> None:
        self.options = options


class TTSPlugin:
    @hookimpl
    def register_tts(self, register: Register) -> None:
        register("fake", FakeTTS, options=VoiceOptions, description="A scripted TTS")
        register("alpha", lambda: "alpha-tts")


class STTPlugin:
    @hookimpl
    def register_stt(self, register: Register) -> None:
        register("fake", lambda: "fake-stt", description="Same name as the TTS, other kind")


def registry_with(*plugin_objects: tuple[object, str]) -> ProviderRegistry:
    pm = load_plugin_manager(entry_points=False)
    for obj, name in plugin_objects:
        pm.register(obj, name=name)
    return ProviderRegistry.from_plugin_manager(pm)


# --- registration and lookup -------------------------------------------------------------------------------------


def test_builtin_energy_backend_is_registered_without_entry_points() -> None:
    registry = load_registry(entry_points=False)
    info = registry.get("lipsync_backend", "energy").info
    assert (info.plugin, info.distribution) == ("avaluma.renderer.plugin", "avaluma")
    assert registry.failures == []


def test_hooks_register_providers_by_kind_and_name() -> None:
    registry = registry_with((TTSPlugin(), "voices"), (STTPlugin(), "ears"))
    assert registry.names("tts") == ["alpha", "fake"]
    assert registry.names("stt") == ["fake"]
    described = {(p.kind, p.name): p for p in registry.describe()}
    assert described["tts", "fake"].plugin == "voices"
    assert described["tts", "fake"].description == "A scripted TTS"
    assert described["stt", "fake"].plugin == "ears"


def test_describe_groups_by_kind_in_a_stable_order() -> None:
    kinds = [p.kind for p in registry_with((TTSPlugin(), "voices"), (STTPlugin(), "ears")).describe()]
    assert kinds == sorted(kinds, key=list(KIND_HOOKS).index)


def test_create_validates_options_and_calls_the_factory() -> None:
    registry = registry_with((TTSPlugin(), "voices"))
    made = registry.create("tts", ProviderRef(name="fake", options={"voice": "joe", "speed": "1.5"}))
    assert isinstance(made, FakeTTS)
    assert made.options == VoiceOptions(voice="joe", speed=1.5)


def test_create_as_checks_the_type_the_caller_expects() -> None:
    registry = registry_with((TTSPlugin(), "voices"))
    assert isinstance(registry.create_as("tts", "fake", FakeTTS), FakeTTS)
    with pytest.raises(FailedPrecondition, match=r"'alpha' \(plugin 'voices'\) built a str, not a FakeTTS"):
        registry.create_as("tts", "alpha", FakeTTS)


def test_factory_without_options_model_is_called_without_arguments() -> None:
    assert registry_with((TTSPlugin(), "voices")).create("tts", "alpha") == "alpha-tts"


def test_options_for_a_provider_without_options_are_rejected() -> None:
    registry = registry_with((TTSPlugin(), "voices"))
    with pytest.raises(ConfigError, match=r"tts provider 'alpha' takes no options; remove voice"):
        registry.create("tts", ProviderRef(name="alpha", options={"voice": "x"}))


def test_unknown_option_names_provider_plugin_and_valid_keys() -> None:
    registry = registry_with((TTSPlugin(), "voices"))
    with pytest.raises(ConfigError) as err:
        registry.create("tts", ProviderRef(name="fake", options={"voise": "joe"}))
    assert err.value.message == "tts provider 'fake' (plugin 'voices'): unknown option(s) voise (valid: voice, speed)"


def test_invalid_option_value_names_the_option() -> None:
    registry = registry_with((TTSPlugin(), "voices"))
    with pytest.raises(ConfigError, match=r"tts provider 'fake' options: speed: .*greater than 0.*\(got -1\)"):
        registry.parse_options("tts", ProviderRef(name="fake", options={"speed": -1}))


def test_unknown_provider_lists_the_installed_ones() -> None:
    registry = registry_with((TTSPlugin(), "voices"))
    with pytest.raises(ConfigError) as err:
        registry.create("tts", ProviderRef(name="cartesia"))
    assert err.value.message.startswith(
        "unknown tts provider 'cartesia'; installed: alpha, fake — install a plugin with pip or fix the name"
    )


def test_unknown_provider_of_an_empty_kind_says_none_installed() -> None:
    with pytest.raises(ConfigError, match=r"unknown llm provider 'openai'; installed: none"):
        registry_with().get("llm", "openai")


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown provider kind 'speech'"):
        registry_with().names("speech")


def test_duplicate_names_of_one_kind_name_both_plugins() -> None:
    with pytest.raises(ConfigError) as err:
        registry_with((TTSPlugin(), "first"), (TTSPlugin(), "second"))
    message = err.value.message
    assert "tts provider 'fake' is registered twice: by plugin 'first' and by plugin 'second'" in message
    assert "AVALUMA_DISABLE_PLUGINS" in message


def test_factory_errors_name_the_provider() -> None:
    def boom(options: VoiceOptions) -> None:
        raise RuntimeError("model file missing")

    registry = ProviderRegistry()
    registry.add("tts", "broken", boom, options=VoiceOptions, plugin="p", distribution="p-dist")
    with pytest.raises(FailedPrecondition, match=r"tts provider 'broken' \(plugin 'p' \(p-dist\)\) failed to start: "):
        registry.create("tts", "broken")


def test_factory_domain_errors_pass_through_unchanged() -> None:
    def needs_key() -> None:
        raise ConfigError("set MY_API_KEY")

    registry = ProviderRegistry()
    registry.add("stt", "keyed", needs_key)
    with pytest.raises(ConfigError, match=r"^set MY_API_KEY$"):
        registry.create("stt", "keyed")


# --- broken plugins are reported, the others still load ----------------------------------------------------------


class RaisingPlugin:
    @hookimpl
    def register_tts(self, register: Register) -> None:
        register("half", lambda: None)

    @hookimpl
    def register_stt(self, register: Register) -> None:
        raise RuntimeError("credentials module exploded")


def test_plugin_whose_hook_raises_is_reported_and_dropped() -> None:
    registry = registry_with((RaisingPlugin(), "raiser"), (STTPlugin(), "ears"))
    assert [(f.name, f.error) for f in registry.failures] == [("raiser", "register_stt: credentials module exploded")]
    assert registry.names("tts") == []  # what it registered before failing is dropped too
    assert registry.names("stt") == ["fake"]


class BadNamePlugin:
    @hookimpl
    def register_vad(self, register: Register) -> None:
        register("two words", lambda: None)


def test_invalid_registration_is_reported() -> None:
    registry = registry_with((BadNamePlugin(), "badname"), (TTSPlugin(), "voices"))
    assert len(registry.failures) == 1
    assert "provider name must be a non-empty string without spaces" in registry.failures[0].error
    assert registry.names("tts") == ["alpha", "fake"]


class MisspeltHookPlugin:
    @hookimpl
    def register_ttss(self, register: Register) -> None:
        register("never", lambda: None)


class WrongArgumentPlugin:
    @hookimpl
    def register_tts(self, registrar: Register) -> None:
        registrar("never", lambda: None)


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [(MisspeltHookPlugin(), "unknown hook(s) register_ttss"), (WrongArgumentPlugin(), "registrar")],
    ids=["misspelt-hook", "wrong-argument"],
)
def test_plugin_not_matching_the_contract_is_reported_and_skipped(plugin: object, expected: str) -> None:
    pm = load_plugin_manager(entry_points=False)
    plugins._register(pm, plugin, "odd", plugins.PluginInfo("odd", "odd-dist", "1.0", builtin=False))
    assert [(f.name, f.distribution) for f in pm.failures] == [("odd", "odd-dist")]
    assert expected in pm.failures[0].error
    assert not pm.has_plugin("odd")


def test_every_registration_hookspec_has_a_provider_kind() -> None:
    register_hooks = {n for n in dir(hookspecs) if n.startswith("register_") and n != "register_commands"}
    assert register_hooks - {"register"} == set(KIND_HOOKS.values())


# --- validate(config) --------------------------------------------------------------------------------------------


def test_validate_accepts_installed_providers_with_valid_options() -> None:
    registry = registry_with((TTSPlugin(), "voices"))
    config = Config(tts=ProviderRef(name="fake", options={"speed": 2}))
    registry.validate(config, keys=["lipsync", "tts"])  # raises on any problem


def test_validate_reports_every_problem_with_its_config_key() -> None:
    registry = registry_with((TTSPlugin(), "voices"))
    config = Config(lipsync=ProviderRef(name="nope"), tts=ProviderRef(name="fake", options={"pitch": 2}))
    with pytest.raises(ConfigError) as err:
        registry.validate(config, keys=["lipsync", "tts"])
    lines = err.value.message.splitlines()
    assert lines[0].startswith("config lipsync: unknown lipsync_backend provider 'nope'; installed: energy")
    assert lines[1].startswith("config tts: tts provider 'fake' (plugin 'voices'): unknown option(s) pitch")
    assert len(lines) == 2


def test_validate_checks_nested_sections_by_field_kind() -> None:
    registry = registry_with((TTSPlugin(), "voices"), (STTPlugin(), "ears"))
    config = Config.model_validate(
        {"agent": {"stt": {"name": "fake"}, "tts": {"name": "fake"}, "llm": {"name": "gpt"}, "vad": {"name": "v"}}}
    )
    with pytest.raises(ConfigError) as err:
        registry.validate(config, keys=["agent"])
    keys = [line.split(":")[0] for line in err.value.message.splitlines()]
    # agent.stt and agent.tts are installed; the rest are not, and nothing outside agent.* is checked.
    assert keys == [
        "config agent.llm",
        "config agent.vad",
        "config agent.turn_detector",
        "config agent.noise_cancellation",
    ]


def test_validate_can_be_limited_to_some_kinds() -> None:
    registry = registry_with()  # no TTS installed: fine for a server that only renders
    registry.validate(Config(tts=ProviderRef(name="piper")), kinds=["lipsync_backend"])
    with pytest.raises(ConfigError, match="config tts: unknown tts provider 'piper'"):
        registry.validate(Config(tts=ProviderRef(name="piper")))


# --- entry points: allow-list, deny-list, import failures --------------------------------------------------------

GOOD = """
from avaluma.core.hookspecs import hookimpl

@hookimpl
def register_tts(register):
    register("good-tts", lambda: "good")
"""
OTHER = """
from avaluma.core.hookspecs import hookimpl

@hookimpl
def register_stt(register):
    register("other-stt", lambda: "other")
"""
BROKEN = """
raise ImportError("libfoo.so.1: cannot open shared object file")
"""


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str, dict[str, str]], None]]:
    """Write distributions (dist-info + modules) into tmp_path and make them the only installed entry points."""
    modules: list[str] = []

    def install(dist: str, version: str, eps: dict[str, str]) -> None:
        lines = ["[avaluma.plugins]"]
        for ep_name, source in eps.items():
            module = f"avt_plugin_{ep_name.replace('-', '_')}"
            (tmp_path / f"{module}.py").write_text(source)
            modules.append(module)
            lines.append(f"{ep_name} = {module}")
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")

    def entry_points() -> list[Any]:
        return [
            ep
            for dist in metadata.distributions(path=[str(tmp_path)])
            for ep in dist.entry_points
            if ep.group == hookspecs.ENTRY_POINT_GROUP
        ]

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_entry_points", entry_points)
    yield install
    for module in modules:
        sys.modules.pop(module, None)


def third_party(pm: PluginManager) -> dict[str, tuple[str, str]]:
    return {name: (i.distribution, i.version) for name, i in pm.plugin_info.items() if not i.builtin}


def test_installed_plugins_load_with_their_distribution(installed: Any) -> None:
    installed("avaluma-plugin-good", "1.2.3", {"good": GOOD})
    installed("avaluma-plugin-other", "0.1.0", {"other": OTHER})
    pm = load_plugin_manager(env={})
    assert third_party(pm) == {"good": ("avaluma-plugin-good", "1.2.3"), "other": ("avaluma-plugin-other", "0.1.0")}
    info = ProviderRegistry.from_plugin_manager(pm).get("tts", "good-tts").info
    assert (info.plugin, info.distribution, info.version) == ("good", "avaluma-plugin-good", "1.2.3")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AVALUMA_PLUGINS": "good"}, {"good"}),
        ({"AVALUMA_PLUGINS": " good , other "}, {"good", "other"}),
        ({"AVALUMA_PLUGINS": ""}, set()),
        ({"AVALUMA_PLUGINS": "none"}, set()),
        ({"AVALUMA_DISABLE_PLUGINS": "other"}, {"good"}),
        ({"AVALUMA_PLUGINS": "good,other", "AVALUMA_DISABLE_PLUGINS": "good"}, {"other"}),
    ],
)
def test_allow_and_deny_lists_select_plugins(installed: Any, env: dict[str, str], expected: set[str]) -> None:
    installed("avaluma-plugin-good", "1.2.3", {"good": GOOD})
    installed("avaluma-plugin-other", "0.1.0", {"other": OTHER})
    assert set(third_party(load_plugin_manager(env=env))) == expected


def test_entry_points_false_loads_no_installed_plugin(installed: Any) -> None:
    installed("avaluma-plugin-good", "1.2.3", {"good": GOOD})
    assert third_party(load_plugin_manager(entry_points=False, env={})) == {}


def test_plugin_failing_to_import_is_reported_and_others_load(installed: Any) -> None:
    installed("avaluma-plugin-broken", "2.0.0", {"broken": BROKEN})
    installed("avaluma-plugin-good", "1.2.3", {"good": GOOD})
    registry = load_registry(env={})
    assert [(f.name, f.distribution) for f in registry.failures] == [("broken", "avaluma-plugin-broken")]
    assert registry.failures[0].error == "ImportError: libfoo.so.1: cannot open shared object file"
    assert registry.names("tts") == ["good-tts"]


def test_builtin_with_a_missing_dependency_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "avt_builtin_needs_dep.py").write_text("import avt_dependency_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "BUILTIN_PLUGINS", ("avt_builtin_needs_dep", "avaluma.renderer.not_written_yet"))
    pm = load_plugin_manager(entry_points=False)
    # The absent module is skipped quietly; the present one with a missing dependency is a real error.
    assert [(f.name, f.distribution) for f in pm.failures] == [("avt_builtin_needs_dep", "avaluma")]
    assert "avt_dependency_not_installed" in pm.failures[0].error
