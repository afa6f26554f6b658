"""Serving a trained run: streamed top-K (`recommend`), the model's own attention behind it
(`explain`) and user vectors (`export`), all from a run folder without the original data."""
