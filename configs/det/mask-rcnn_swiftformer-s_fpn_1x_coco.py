# Mask R-CNN 1x on COCO with SwiftFormer-S: the L1 recipe, S backbone.
_base_ = './mask-rcnn_swiftformer-l1_fpn_1x_coco.py'

variant = 's'
model = dict(
    backbone=dict(
        arch=variant,
        init_cfg=dict(checkpoint=f'checkpoints/swiftformer_{variant}.pth')),
    neck=dict(in_channels=[48, 64, 168, 224]))
