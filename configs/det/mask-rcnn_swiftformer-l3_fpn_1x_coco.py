# Mask R-CNN 1x on COCO with SwiftFormer-L3: the L1 recipe, L3 backbone.
# Paper: 42.7 box AP / 39.1 mask AP.
_base_ = './mask-rcnn_swiftformer-l1_fpn_1x_coco.py'

variant = 'l3'
model = dict(
    backbone=dict(
        arch=variant,
        init_cfg=dict(checkpoint=f'checkpoints/swiftformer_{variant}.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
