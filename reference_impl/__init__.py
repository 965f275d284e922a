"""Reference Parameter Golf stack: training, quantization, evaluation and legal TTT (see DESIGN.md)."""
