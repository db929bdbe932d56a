"""Effect handlers: the primitives every unlearning objective is built from."""

from .anchor import AnchorMessenger, anchor
from .forget import ForgetMessenger, forget
from .retain import RetainMessenger, retain

__all__ = ["AnchorMessenger", "ForgetMessenger", "RetainMessenger", "anchor", "forget", "retain"]
