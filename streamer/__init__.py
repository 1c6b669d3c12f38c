"""ser: speech emotion recognition, live (installed as `ser` from the repository's streamer/).

    from ser import Recognizer
    results = Recognizer(model="default").predict_file("speech.wav")

`Recognizer` and `Result` are the Python API (streamer/api.py, docs/api.md); they are imported
on first use, so `import ser.features` and the command-line tools do not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ser.api import Recognizer, Result

__all__ = ["Recognizer", "Result"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ser import api

        return getattr(api, name)
    raise AttributeError(f"module 'ser' has no attribute {name!r}")
