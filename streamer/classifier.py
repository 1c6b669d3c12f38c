"""Run a bundle's `.tflite` model with LiteRT (no TensorFlow import)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamer.adaptation import AdaptiveNormalizer
from streamer.bundle import Bundle, BundleError, load_bundle
from streamer.scoring import apply_temperature

logger = logging.getLogger(__name__)


class Classifier:
    """Class probabilities for feature vectors. Not thread-safe: use it from one thread."""

    def __init__(self, bundle: Bundle, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.bundle = bundle
        self._temperature = bundle.temperature
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
        """(dim,) float32 model input (adapted features, see `adapt`) -> (n_labels,) float32
        calibrated probabilities summing to 1."""
        x = np.asarray(features, dtype=np.float32).reshape(1, self.input_dim)
        self._interpreter.set_tensor(self._input_index, x)
        self._interpreter.invoke()
        probs = np.array(self._interpreter.get_tensor(self._output_index)[0], dtype=np.float32)
        return apply_temperature(probs, self._temperature) if self._temperature != 1.0 else probs

    def adapter(self) -> AdaptiveNormalizer | None:
        """A fresh per-stream feature adapter for this bundle (None: the model needs none)."""
        prior = self.bundle.adaptation
        return AdaptiveNormalizer(prior) if prior is not None else None

    def probabilities(self, audio: npt.ArrayLike, sample_rate: int) -> dict[str, float]:
        """One utterance (mono, shape (n,)) -> {label: probability} in the bundle's label order."""
        from streamer.features import extract

        features = extract(audio, sample_rate)
        adapter = self.adapter()  # a single utterance: no speaker history
        probs = self.predict(adapter.push(0, features) if adapter is not None else features)
        return dict(zip(self.bundle.labels, (float(p) for p in probs), strict=True))
