"""What configuration requests change: one module per kind of object, each a
ConfigTarget (see base.py). TARGETS is the only way in; an unknown name is a
KeyError, never a fall-through."""

from approvals.config import catalogue, chat_hooks, connectors, freezes, policies, users, zones
from approvals.config.base import ConfigTarget

TARGETS: dict[str, ConfigTarget] = {
    target.name: target
    for target in (
        users.TARGET,
        policies.TARGET,
        zones.TARGET,
        catalogue.TARGET,
        connectors.TARGET,
        freezes.TARGET,
        chat_hooks.TARGET,
    )
}

__all__ = ["TARGETS", "ConfigTarget"]
