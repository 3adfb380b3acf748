# Mask R-CNN 1x with SwiftFormer-L1 in automatic mixed precision (fp16 on
# CUDA with dynamic loss scaling); everything else as the fp32 config.
_base_ = './mask-rcnn_swiftformer-l1_fpn_1x_coco.py'

optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
