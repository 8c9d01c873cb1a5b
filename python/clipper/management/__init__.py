"""The frontend process's control side: the management service (validate, store, push to the engine), its
REST API on the management port, and the process entry point (`python -m clipper.management`).

Internal: users reach it through `clipper.ClipperConnection` or the management REST API.
"""

from clipper.management.engine_link import EngineControl, engine_config
from clipper.management.service import ManagementService

__all__ = ["EngineControl", "ManagementService", "engine_config"]
