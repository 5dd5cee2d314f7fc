"""Model architectures, specs and construction. See `architectures.py` for the registry."""

from dlsec_core.models.architectures import ARCHITECTURES, ArchInfo, register_architecture
from dlsec_core.models.spec import ModelSpec, build_model, count_parameters

__all__ = [
    "ARCHITECTURES",
    "ArchInfo",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "register_architecture",
]
