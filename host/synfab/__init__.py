"""synfab: event-based CNN fabric with synapse compression (PEG + ESU) — host package."""
__version__ = "0.1.0"

from .config import FabricConfig, PRESETS  # noqa: F401
from .errors import SynfabError  # noqa: F401
