"""A small fault-injecting HTTP/1.1 proxy for tests and demos (see ``faultproxy.proxy``)."""

from typing import Any

__all__ = ["FaultProxy", "RemoteProxy"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m faultproxy.proxy` does not find the module already imported.
    if name == "FaultProxy":
        from .proxy import FaultProxy

        return FaultProxy
    if name == "RemoteProxy":
        from .control import RemoteProxy

        return RemoteProxy
    raise AttributeError(name)
