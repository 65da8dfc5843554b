"""The token store: a backend contract, backends, and the sealing layer above them."""

from .base import Backend, Record
from .factory import create_backend
from .sealed import SealedStore

__all__ = ["Backend", "Record", "SealedStore", "create_backend"]
