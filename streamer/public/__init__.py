"""`import ser`: the Python API (streamer/api.py), installed under the name `ser`.

from ser import Recognizer
"""

from streamer.api import Recognizer, Result

__all__ = ["Recognizer", "Result"]
