"""Reference Parameter Golf stack: training, quantization, evaluation and legal TTT (see reference_impl/README.md)."""
