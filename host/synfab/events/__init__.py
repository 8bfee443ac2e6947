"""Event sources: event-camera files, transforms, framing and image-derived events."""
from .core import EVENT_DTYPE, EventFileError, Recording, make_events  # noqa: F401
from .readers import read  # noqa: F401
