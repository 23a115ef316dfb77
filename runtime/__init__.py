"""edgedistill's torch-free runtime: onnxruntime, tokenizers and numpy only."""
