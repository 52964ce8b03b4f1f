"""The flare classes forecast, in a module of its own: the CLI builds its parser from them without loading the
message schemas (pydantic) or the features (pandas)."""

from typing import Literal, get_args

TargetClass = Literal["C", "M", "X"]
TARGET_CLASSES: tuple[TargetClass, ...] = get_args(TargetClass)
