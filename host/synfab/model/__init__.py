"""What defines the results: the event-driven golden model executing the encoded tables
(`golden`: `Model`, the input events of a frame) and the dense integer reference of a network
(`reference`: `run`, `simulate`).  The golden model's names are importable from here."""
from .golden import (EVENT_DTYPE, EVENT_FIELDS, MODEL_COUNTERS, OUT_DTYPE, FrameResult, Model, ModelError,  # noqa: F401
                     changes, event_columns, frame_events, input_events, step_input)
