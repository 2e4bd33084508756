"""One test per hookspec: a plugin implementing it is called with the documented arguments."""

from __future__ import annotations

import inspect
from typing import Any

import click
import pytest
from click.testing import CliRunner

from avaluma.core import hookspecs, plugins
from avaluma.core.cli import AvalumaGroup
from avaluma.core.config import Config
from avaluma.core.hookspecs import Register, hookimpl
from avaluma.core.plugins import KIND_HOOKS, ProviderRegistry, load_plugin_manager

LIFECYCLE_HOOKS = ("startup", "shutdown", "session_started", "session_ended")


def test_every_hookspec_is_covered_here() -> None:
    specs = {name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "avaluma_spec")}
    assert specs == set(KIND_HOOKS.values()) | {"register_commands", *LIFECYCLE_HOOKS}


def _registering_plugin(hook_name: str, calls: list[Any]) -> object:
    def impl(register: Register) -> None:
        calls.append(register)
        register("made-up", lambda: f"built by {hook_name}", description=hook_name)

    impl.__name__ = hook_name
    return type("Plugin", (), {hook_name: staticmethod(hookimpl(impl))})()


@pytest.mark.parametrize(("kind", "hook_name"), list(KIND_HOOKS.items()))
def test_registration_hook_receives_register_and_fills_its_kind(kind: str, hook_name: str) -> None:
    calls: list[Any] = []
    pm = load_plugin_manager(entry_points=False)
    pm.register(_registering_plugin(hook_name, calls), name="p")
    registry = ProviderRegistry.from_plugin_manager(pm)
    assert len(calls) == 1 and callable(calls[0])
    assert "made-up" in registry.names(kind)
    assert registry.create(kind, "made-up") == f"built by {hook_name}"
    other_kinds = [k for k in KIND_HOOKS if k != kind]
    assert all("made-up" not in registry.names(k) for k in other_kinds)


class LifecyclePlugin:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def startup(self, config: Config) -> None:
        self.calls.append(("startup", {"config": config}))

    @hookimpl
    def shutdown(self) -> None:
        self.calls.append(("shutdown", {}))

    @hookimpl
    def session_started(self, session_id: str, avatar_id: str) -> None:
        self.calls.append(("session_started", {"session_id": session_id, "avatar_id": avatar_id}))

    @hookimpl
    def session_ended(self, session_id: str, reason: str) -> None:
        self.calls.append(("session_ended", {"session_id": session_id, "reason": reason}))


@pytest.fixture
def lifecycle() -> tuple[Any, LifecyclePlugin]:
    pm = load_plugin_manager(entry_points=False)
    plugin = LifecyclePlugin()
    pm.register(plugin, name="lifecycle")
    return pm, plugin


def test_startup_receives_the_config(lifecycle: tuple[Any, LifecyclePlugin]) -> None:
    pm, plugin = lifecycle
    config = Config(default_avatar="grace")
    pm.hook.startup(config=config)
    assert plugin.calls == [("startup", {"config": config})]


def test_shutdown_takes_no_arguments(lifecycle: tuple[Any, LifecyclePlugin]) -> None:
    pm, plugin = lifecycle
    pm.hook.shutdown()
    assert plugin.calls == [("shutdown", {})]


def test_session_started_receives_session_and_avatar(lifecycle: tuple[Any, LifecyclePlugin]) -> None:
    pm, plugin = lifecycle
    pm.hook.session_started(session_id="s-1", avatar_id="astronaut")
    assert plugin.calls == [("session_started", {"session_id": "s-1", "avatar_id": "astronaut"})]


def test_session_ended_receives_session_and_reason(lifecycle: tuple[Any, LifecyclePlugin]) -> None:
    pm, plugin = lifecycle
    pm.hook.session_ended(session_id="s-1", reason="stopped")
    assert plugin.calls == [("session_ended", {"session_id": "s-1", "reason": "stopped"})]


class CommandPlugin:
    def __init__(self) -> None:
        self.groups: list[click.Group] = []

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        self.groups.append(cli)

        @cli.command("hello")
        @click.argument("who")
        def hello(who: str) -> None:
            """Say hello (from a plugin)."""
            click.echo(f"hello {who}")


def test_register_commands_receives_the_group_and_its_commands_run(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = CommandPlugin()

    def load(**kwargs: Any) -> Any:
        pm = load_plugin_manager(entry_points=False)
        pm.register(plugin, name="commands")
        return pm

    monkeypatch.setattr(plugins, "load_plugin_manager", load)
    group = AvalumaGroup(name="avaluma", lazy_commands={})
    result = CliRunner().invoke(group, ["hello", "world"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello world\n"
    assert plugin.groups == [group]
    help_result = CliRunner().invoke(group, ["--help"])
    assert "Say hello (from a plugin)." in help_result.output
