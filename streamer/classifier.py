"""Run a bundle's `.tflite` model with LiteRT (no TensorFlow import)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamer.bundle import Bundle, BundleError, load_bundle

logger = logging.getLogger(__name__)


class Classifier:
    """Class probabilities for feature vectors. Not thread-safe: use it from one thread."""

    def __init__(self, bundle: Bundle, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.bundle = bundle
        try:
            self._interpreter = Interpreter(
                model_path=str(bundle.tflite_path), num_threads=num_threads
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{bundle.tflite_path} is not a usable TFLite model ({exc})") from exc
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        self._input_index = int(inp["index"])
        self._output_index = int(out["index"])
        self.input_dim = int(inp["shape"][-1])
        n_out = int(out["shape"][-1])
        if n_out != len(bundle.labels):
            raise BundleError(
                f"{bundle.tflite_path}: model has {n_out} outputs but the manifest names "
                f"{len(bundle.labels)} labels; retrain the bundle"
            )

    @classmethod
    def from_dir(cls, path: Path) -> Classifier:
        return cls(load_bundle(path))

    def predict(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """(dim,) float32 features -> (n_labels,) float32 probabilities summing to 1."""
        x = np.asarray(features, dtype=np.float32).reshape(1, self.input_dim)
        self._interpreter.set_tensor(self._input_index, x)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output_index)[0], dtype=np.float32)

    def probabilities(self, audio: npt.ArrayLike, sample_rate: int) -> dict[str, float]:
        """One utterance (mono, shape (n,)) -> {label: probability} in the bundle's label order."""
        from streamer.features import extract

        probs = self.predict(extract(audio, sample_rate))
        return dict(zip(self.bundle.labels, (float(p) for p in probs), strict=True))
