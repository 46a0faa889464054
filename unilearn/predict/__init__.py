"""`unilearn predict`: a fine-tuned (or imported VideoMAE / MAE-DFER) model on raw videos, frame
folders and images, with the preprocessing stage's face cropping and the test stage's clip
sampling. `inputs` (what to run on), `media` (lazy decoding), `model` (checkpoint -> model and
settings), `pipeline` (one input -> test clips), `runner` (batched scoring), `timeline`,
`output` (tables, summary), `cli`. See docs/predict.md."""
