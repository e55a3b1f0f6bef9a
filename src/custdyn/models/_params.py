"""The scikit-learn settings convention, shared by the models that are not BTYD models."""

from __future__ import annotations

import inspect
from typing import Any, Self


class SettingsMixin:
    """``get_params`` / ``set_params`` over the arguments of ``__init__``."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Settings given to ``__init__`` (scikit-learn's convention)."""
        names = inspect.signature(type(self).__init__).parameters
        return {p: getattr(self, p) for p in names if p != "self"}

    def set_params(self, **params: Any) -> Self:
        """Change settings; returns self."""
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"unknown setting {k!r}; valid settings are {sorted(valid)}")
            setattr(self, k, v)
        return self
