"""The admin API: `ClipperConnection` and the management REST client it is built on."""

from clipper.admin.connection import ClipperConnection

__all__ = ["ClipperConnection"]
