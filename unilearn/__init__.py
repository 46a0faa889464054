"""UniLearn: unified image+video MAE pre-training and joint SFER/DFER fine-tuning with a
Mixture of Adapter Experts, for dynamic facial expression recognition."""

__version__ = "0.1.0"
