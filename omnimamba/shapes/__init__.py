"""The shapes world and everything the small shipped model needs besides the backbone training pipeline.

world / language / questions   scenes, captions and questions with true, unambiguous statements
records                        infinite training-record streams in the training contract's formats
checker                        segments generated images and checks a caption against them
quality                        the evaluation harness (image chat, text to image) on fresh held-out scenes
preset                         the proposed `shapes` OmniMambaConfig
scene_batches / pretrain       training the VQ and the two vision towers (gpu_pretrain_check runs both)
"""
