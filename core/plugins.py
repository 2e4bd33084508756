"""Plugin loading and the provider registry.

Two steps, kept apart so each can be tested alone:

1. :func:`load_plugin_manager` builds a pluggy manager: built-in plugin modules first (:data:`BUILTIN_PLUGINS`), then
   third-party plugins found through the ``avaluma.plugins`` entry-point group, filtered by environment variables:

   - ``AVALUMA_PLUGINS``: allow-list of entry-point names, comma-separated. Unset = every installed plugin;
     empty or ``none`` = no third-party plugin at all.
   - ``AVALUMA_DISABLE_PLUGINS``: deny-list of entry-point names, applied after the allow-list.

   A plugin that fails to import or register is recorded in :attr:`PluginManager.failures` (name, distribution,
   error), logged, and skipped; the others still load.

2. :meth:`ProviderRegistry.from_plugin_manager` calls every ``register_*`` hook with a ``register`` callable and
   indexes the factories by kind and name. :meth:`ProviderRegistry.create` validates a
   :class:`~avaluma.core.config.ProviderRef`'s options against the provider's options model and calls the factory;
   :meth:`ProviderRegistry.validate` checks a whole config at start-up without building anything.

For plugin authors: ``register(name, factory, options=Model, description="...")``. The factory is called as
``factory(options_instance)`` when an options model is given and as ``factory()`` when it is not. Options models
should set ``extra="forbid"``; the registry rejects unknown keys either way.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import pluggy
from pydantic import BaseModel, ValidationError

from avaluma.core import hookspecs
from avaluma.core.config import Config, ProviderRef
from avaluma.core.config_loader import describe_validation_error
from avaluma.core.errors import AvalumaError, ConfigError, FailedPrecondition

logger = logging.getLogger(__name__)

#: Modules shipped inside the ``avaluma`` distribution that register providers through the same hooks.
BUILTIN_PLUGINS: tuple[str, ...] = ("avaluma.renderer.plugin",)

ALLOW_ENV = "AVALUMA_PLUGINS"
DENY_ENV = "AVALUMA_DISABLE_PLUGINS"

T = TypeVar("T")

#: Provider kind -> the registration hook that fills it, in display order.
KIND_HOOKS: dict[str, str] = {
    "stt": "register_stt",
    "llm": "register_llm",
    "tts": "register_tts",
    "vad": "register_vad",
    "turn_detector": "register_turn_detectors",
    "noise_cancellation": "register_noise_cancellers",
    "lipsync_backend": "register_lipsync_backends",
}
PROVIDER_KINDS: tuple[str, ...] = tuple(KIND_HOOKS)

#: Config fields holding a :class:`ProviderRef` -> the provider kind they name.
CONFIG_PROVIDER_FIELDS: dict[str, str] = {
    "lipsync": "lipsync_backend",
    "tts": "tts",
    "stt": "stt",
    "llm": "llm",
    "vad": "vad",
    "turn_detector": "turn_detector",
    "noise_cancellation": "noise_cancellation",
}
# A ProviderRef field whose name is neither here nor a kind is skipped by validate(): add it here.


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """A plugin registered on the manager and where it came from."""

    name: str
    distribution: str
    version: str
    builtin: bool


@dataclass(frozen=True, slots=True)
class PluginFailure:
    """A plugin that could not be loaded or could not register its providers."""

    name: str
    distribution: str
    error: str


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """One registered provider, as listed by ``avaluma plugins``."""

    kind: str
    name: str
    plugin: str
    distribution: str
    version: str
    description: str


@dataclass(frozen=True, slots=True)
class Provider:
    info: ProviderInfo
    factory: Callable[..., Any]
    options: type[BaseModel] | None


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what ``avaluma plugins`` reports: plugin origins and load failures."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.plugin_info: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []

    def add_failure(self, name: str, distribution: str, error: BaseException | str) -> None:
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.failures.append(PluginFailure(name=name, distribution=distribution, error=message))
        logger.warning(
            "plugin failed to load and was skipped",
            extra={"plugin": name, "distribution": distribution, "error": message},
        )


# --- Loading plugins ---------------------------------------------------------------------------------------------


def plugin_filter(env: Mapping[str, str]) -> tuple[frozenset[str] | None, frozenset[str]]:
    """Parse the allow-list (``None`` = allow all) and the deny-list from the environment."""

    def names(value: str) -> frozenset[str]:
        return frozenset(n.strip() for n in value.split(",") if n.strip() and n.strip().lower() != "none")

    raw_allow = env.get(ALLOW_ENV)
    allow = None if raw_allow is None else names(raw_allow)
    return allow, names(env.get(DENY_ENV, ""))


def load_plugin_manager(*, entry_points: bool = True, env: Mapping[str, str] | None = None) -> PluginManager:
    """Build the plugin manager: built-ins, then (if ``entry_points``) installed third-party plugins.

    Unit tests pass ``entry_points=False`` and register plugin objects themselves, so nothing installed on the
    machine leaks in. ``env`` defaults to ``os.environ``.
    """
    pm = PluginManager()
    _register_builtins(pm)
    if entry_points:
        _register_entry_points(pm, os.environ if env is None else env)
    return pm


def _avaluma_version() -> str:
    try:
        return metadata.version("avaluma")
    except metadata.PackageNotFoundError:
        return "unknown"


def _register_builtins(pm: PluginManager) -> None:
    version = _avaluma_version()
    for module_name in BUILTIN_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only "this module does not exist (yet)" is quiet; a missing dependency inside it is a real error.
            if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                logger.debug("built-in plugin module not present", extra={"plugin": module_name})
                continue
            pm.add_failure(module_name, "avaluma", exc)
            continue
        except Exception as exc:  # a broken built-in must not take the CLI down; it is reported instead
            pm.add_failure(module_name, "avaluma", exc)
            continue
        _register(pm, module, module_name, PluginInfo(module_name, "avaluma", version, builtin=True))


def _register_entry_points(pm: PluginManager, env: Mapping[str, str]) -> None:
    allow, deny = plugin_filter(env)
    seen: set[str] = set()
    for ep in _entry_points():
        seen.add(ep.name)
        if (allow is not None and ep.name not in allow) or ep.name in deny:
            logger.debug("plugin disabled by environment", extra={"plugin": ep.name})
            continue
        dist_name, dist_version = _distribution_of(ep)
        if pm.has_plugin(ep.name):
            pm.add_failure(ep.name, dist_name, f"another plugin is already registered under the name {ep.name!r}")
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # one broken plugin must not stop the others
            pm.add_failure(ep.name, dist_name, exc)
            continue
        _register(pm, plugin, ep.name, PluginInfo(ep.name, dist_name, dist_version, builtin=False))
    if allow:
        missing = sorted(allow - seen)
        if missing:
            logger.warning(
                "AVALUMA_PLUGINS names plugins that are not installed",
                extra={"missing": missing, "installed": sorted(seen)},
            )


def _entry_points() -> Iterable[metadata.EntryPoint]:
    """Installed ``avaluma.plugins`` entry points (one per distribution name: the first on ``sys.path`` wins)."""
    return metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)


def _distribution_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return "unknown", "unknown"
    return str(dist.metadata["Name"] or dist.name), str(dist.version)


def _register(pm: PluginManager, plugin: object, name: str, info: PluginInfo) -> None:
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # pluggy validates hook signatures here
        pm.add_failure(name, info.distribution, exc)
        return
    unknown = [c.name for c in pm.get_hookcallers(plugin) or [] if not c.has_spec()]
    if unknown:
        # A misspelt hook would otherwise be ignored silently and the plugin would seem to do nothing.
        pm.unregister(plugin)
        pm.add_failure(
            name, info.distribution, f"implements unknown hook(s) {', '.join(sorted(unknown))}: check the spelling"
        )
        return
    pm.plugin_info[name] = info


# --- The registry ------------------------------------------------------------------------------------------------


class ProviderRegistry:
    """Provider factories by kind and name, built from the plugins' ``register_*`` hooks."""

    def __init__(self) -> None:
        self._providers: dict[str, dict[str, Provider]] = {kind: {} for kind in PROVIDER_KINDS}
        #: Plugins that failed to load or register (for ``avaluma plugins`` and start-up logs).
        self.failures: list[PluginFailure] = []

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager) -> ProviderRegistry:
        """Call every registration hook; a plugin whose hook raises is recorded in :attr:`failures` and its
        providers are dropped. Two providers of one kind with the same name raise :class:`ConfigError`."""
        registry = cls()
        infos: Mapping[str, PluginInfo] = {}
        if isinstance(pm, PluginManager):
            registry.failures.extend(pm.failures)
            infos = pm.plugin_info
        failed: set[str] = set()
        for kind, hook_name in KIND_HOOKS.items():
            caller: pluggy.HookCaller = getattr(pm.hook, hook_name)
            # get_hookimpls() is in registration order (built-ins first), unlike a hook call which runs LIFO.
            for impl in caller.get_hookimpls():
                if impl.plugin_name in failed or impl.hookwrapper or impl.wrapper:
                    continue
                info = infos.get(impl.plugin_name, PluginInfo(impl.plugin_name, "", "", builtin=False))
                staged: list[Provider] = []
                try:
                    impl.function(**{arg: _Registrar(kind, info, staged) for arg in impl.argnames})
                except Exception as exc:
                    failed.add(impl.plugin_name)
                    registry._drop_plugin(impl.plugin_name)
                    failure = PluginFailure(impl.plugin_name, info.distribution, f"{hook_name}: {exc}")
                    registry.failures.append(failure)
                    logger.warning(
                        "plugin failed to register its providers and was skipped",
                        extra={"plugin": failure.name, "distribution": failure.distribution, "error": failure.error},
                    )
                    continue
                for provider in staged:
                    registry._add(provider)
        return registry

    def add(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] | None = None,
        description: str = "",
        plugin: str = "",
        distribution: str = "",
        version: str = "",
    ) -> None:
        """Register a provider directly (tests and embedding applications; plugins use the hooks)."""
        info = PluginInfo(plugin, distribution, version, builtin=False)
        staged: list[Provider] = []
        _Registrar(kind, info, staged)(name, factory, options=options, description=description)
        self._add(staged[0])

    def _add(self, provider: Provider) -> None:
        info = provider.info
        existing = self._providers[info.kind].get(info.name)
        if existing is not None:
            raise ConfigError(
                f"{info.kind} provider {info.name!r} is registered twice: by plugin {_origin(existing.info)} and by "
                f"plugin {_origin(info)}; uninstall one of them or disable one with {DENY_ENV}=<plugin name>"
            )
        self._providers[info.kind][info.name] = provider

    def _drop_plugin(self, plugin: str) -> None:
        for providers in self._providers.values():
            for name in [n for n, p in providers.items() if p.info.plugin == plugin]:
                del providers[name]

    def names(self, kind: str) -> list[str]:
        """Registered provider names of ``kind``, sorted."""
        return sorted(self._kind(kind))

    def get(self, kind: str, name: str) -> Provider:
        """The provider ``name`` of ``kind``; :class:`ConfigError` listing the installed ones if unknown."""
        providers = self._kind(kind)
        provider = providers.get(name)
        if provider is None:
            installed = ", ".join(sorted(providers)) or "none"
            raise ConfigError(
                f"unknown {kind} provider {name!r}; installed: {installed} — install a plugin with pip or fix the "
                "name (`avaluma plugins` lists what is installed)"
            )
        return provider

    def parse_options(self, kind: str, ref: ProviderRef) -> BaseModel | None:
        """Validate ``ref.options`` against the provider's options model without building the provider."""
        provider = self.get(kind, ref.name)
        where = f"{kind} provider {ref.name!r}"
        model = provider.options
        if model is None:
            if ref.options:
                raise ConfigError(f"{where} takes no options; remove {', '.join(sorted(ref.options))}")
            return None
        valid = {f.alias or n for n, f in model.model_fields.items()} | set(model.model_fields)
        unknown = sorted(set(ref.options) - valid)
        if unknown:
            raise ConfigError(
                f"{where} (plugin {_origin(provider.info)}): unknown option(s) {', '.join(unknown)} "
                f"(valid: {', '.join(model.model_fields) or 'none'})"
            )
        try:
            return model.model_validate(ref.options)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, model, source=f"{where} options")) from None

    def create(self, kind: str, ref: ProviderRef | str) -> Any:
        """Validate the options and build the provider. Factory errors that are not Avaluma errors are wrapped in
        :class:`FailedPrecondition` naming the provider and its plugin."""
        if isinstance(ref, str):
            ref = ProviderRef(name=ref)
        options = self.parse_options(kind, ref)
        provider = self.get(kind, ref.name)
        try:
            return provider.factory(options) if provider.options is not None else provider.factory()
        except AvalumaError:
            raise
        except Exception as exc:
            raise FailedPrecondition(
                f"{kind} provider {ref.name!r} (plugin {_origin(provider.info)}) failed to start: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def create_as(self, kind: str, ref: ProviderRef | str, expected: type[T]) -> T:
        """:meth:`create`, typed: the provider must be an ``expected`` (e.g. ``LipSyncBackend``), else
        :class:`FailedPrecondition` naming the provider, its plugin and what it built instead."""
        built = self.create(kind, ref)
        if not isinstance(built, expected):
            name = ref if isinstance(ref, str) else ref.name
            raise FailedPrecondition(
                f"{kind} provider {name!r} (plugin {_origin(self.get(kind, name).info)}) built a "
                f"{type(built).__name__}, not a {expected.__name__}: fix the plugin's factory"
            )
        return built

    def validate(
        self, config: Config, *, kinds: Iterable[str] | None = None, keys: Iterable[str] | None = None
    ) -> None:
        """Check every provider named in ``config`` exists and its options are valid. Builds nothing.

        ``kinds`` limits the check to some provider kinds; ``keys`` to some dotted config keys and what is below
        them, so each process checks only what it uses: the server ``keys=["lipsync"]``, ``avaluma render``
        ``keys=["lipsync", "tts"]``, the agent ``keys=["agent"]``. Raises one :class:`ConfigError` listing every
        problem, one per line, each starting with its config key.
        """
        wanted = set(PROVIDER_KINDS if kinds is None else kinds)
        prefixes = None if keys is None else tuple(keys)
        problems: list[str] = []
        for key, kind, ref in config_provider_refs(config):
            if kind not in wanted:
                continue
            if prefixes is not None and not any(key == p or key.startswith(p + ".") for p in prefixes):
                continue
            try:
                self.parse_options(kind, ref)
            except ConfigError as exc:
                problems.append(f"config {key}: {exc.message}")
        if problems:
            raise ConfigError("\n".join(problems))

    def describe(self) -> list[ProviderInfo]:
        """Every provider, grouped by kind (in :data:`PROVIDER_KINDS` order) and sorted by name."""
        return [self._providers[kind][name].info for kind in PROVIDER_KINDS for name in sorted(self._providers[kind])]

    def _kind(self, kind: str) -> dict[str, Provider]:
        try:
            return self._providers[kind]
        except KeyError:
            raise ValueError(f"unknown provider kind {kind!r}; kinds: {', '.join(PROVIDER_KINDS)}") from None


def config_provider_refs(section: BaseModel, prefix: str = "") -> Iterator[tuple[str, str, ProviderRef]]:
    """Every :class:`ProviderRef` set in a config section, as ``(dotted key, provider kind, ref)``, depth first.

    The kind comes from the field name (:data:`CONFIG_PROVIDER_FIELDS`, else the name itself when it is a kind), so
    ``agent.stt`` is an ``stt`` provider and ``lipsync`` a ``lipsync_backend``.
    """
    for field in type(section).model_fields:
        value = getattr(section, field)
        key = f"{prefix}{field}"
        if isinstance(value, ProviderRef):
            kind = CONFIG_PROVIDER_FIELDS.get(field, field if field in PROVIDER_KINDS else "")
            if kind:
                yield key, kind, value
        elif isinstance(value, BaseModel):
            yield from config_provider_refs(value, f"{key}.")


class _Registrar:
    """The ``register`` callable handed to one plugin's hook for one kind; collects into ``staged``."""

    def __init__(self, kind: str, plugin: PluginInfo, staged: list[Provider]) -> None:
        self._kind = kind
        self._plugin = plugin
        self._staged = staged

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] | None = None,
        description: str = "",
    ) -> None:
        if not isinstance(name, str) or not name or name != name.strip() or any(c.isspace() for c in name):
            raise ValueError(f"provider name must be a non-empty string without spaces, got {name!r}")
        if not callable(factory):
            raise TypeError(f"{self._kind} provider {name!r}: factory must be callable, got {type(factory).__name__}")
        if options is not None and not (isinstance(options, type) and issubclass(options, BaseModel)):
            raise TypeError(f"{self._kind} provider {name!r}: options must be a pydantic model class")
        if any(p.info.name == name for p in self._staged):
            raise ValueError(f"{self._kind} provider {name!r} registered twice by the same plugin")
        info = ProviderInfo(
            kind=self._kind,
            name=name,
            plugin=self._plugin.name,
            distribution=self._plugin.distribution,
            version=self._plugin.version,
            description=description,
        )
        self._staged.append(Provider(info=info, factory=factory, options=options))


def _origin(info: ProviderInfo | PluginInfo) -> str:
    name = info.plugin if isinstance(info, ProviderInfo) else info.name
    return f"{name!r} ({info.distribution})" if info.distribution else repr(name)


def load_registry(*, entry_points: bool = True, env: Mapping[str, str] | None = None) -> ProviderRegistry:
    """Convenience: :func:`load_plugin_manager` then :meth:`ProviderRegistry.from_plugin_manager`."""
    return ProviderRegistry.from_plugin_manager(load_plugin_manager(entry_points=entry_points, env=env))
