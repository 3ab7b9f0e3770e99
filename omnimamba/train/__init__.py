"""Training OmniMamba: the paper's decoupled two-stage recipe with task LoRA, on HF accelerate.

config (TrainConfig, presets) -> trainable (which tensors learn) -> data and batches -> losses -> loop
(accelerate, checkpoints, logs) -> checkpoints (DIR/model.safetensors, loadable with --model DIR).
"""
