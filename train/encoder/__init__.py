"""Whisper-base's encoder for the bundle: read released weights, rebuild it in Keras, export
it to `.tflite` for `streamer.encoder.Encoder`, and check it against CTranslate2."""
