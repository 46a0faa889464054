"""`unilearn doctor`: tells a user, before any training, whether their copy of a dataset is the one
the paper used: the split files against the official split statistics (`official.py`), the media
on a sample (`media.py`), a verdict first and a Markdown report (`report.py`, `cli.py`)."""
