# Convenience targets; scripts/bootstrap does the installing.
.PHONY: setup run test lint train bench
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
# the shipped bundle: emotion networks on RAVDESS (--cnn), then the speech detector on both corpora
train: setup
	.venv/bin/ser-train --data ../shared/data/ravdess --out models/default --cnn --no-speech-detector
	.venv/bin/ser-train --data ../shared/data/ravdess --data ../shared/data/nemo \
		--speech-only --out models/default
