"""Effect handlers: the primitives every unlearning objective is built from.

One Messenger per module (``forget``, ``retain``, ``anchor``); their function forms come
from one factory in :mod:`pyro_unlearn.handlers.handlers`.
"""

from .anchor import AnchorMessenger
from .forget import ForgetMessenger
from .handlers import anchor, forget, retain
from .retain import RetainMessenger

__all__ = ["AnchorMessenger", "ForgetMessenger", "RetainMessenger", "anchor", "forget", "retain"]
