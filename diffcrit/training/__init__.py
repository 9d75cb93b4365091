"""Training of the built-in checkpoints (``builtin:NAME``) and what ships beside them.

``CHECKPOINTS`` (the shipped folders) is runtime data, owned by ``diffcrit.models.builtins`` and
re-exported here; the data sets they are trained on are built by ``diffcrit.models.datasets``. Training
imports the runtime, never the other way round. Importing this package stays cheap (torch, sklearn
and skimage load only when training). Rebuild a folder with ``python -m diffcrit.training train NAME``.
"""

from __future__ import annotations

from ..models.builtins import CHECKPOINT_ROOT as CHECKPOINTS_DIR
from ..models.builtins import CHECKPOINTS

__all__ = ["CHECKPOINTS", "CHECKPOINTS_DIR"]
