"""The built-in delivery handlers, registered under the ``registry_hub.handlers`` entry
points like any plugin: ``console``, ``webhook``, ``slack``, ``deploy``."""

__all__: list[str] = []
