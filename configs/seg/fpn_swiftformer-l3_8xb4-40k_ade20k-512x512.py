# Semantic FPN 40k on ADE20K with SwiftFormer-L3: the L1 recipe, L3 backbone.
# Paper: 43.9 mIoU.
_base_ = './fpn_swiftformer-l1_8xb4-40k_ade20k-512x512.py'

variant = 'l3'
model = dict(
    backbone=dict(
        arch=variant,
        init_cfg=dict(checkpoint=f'checkpoints/swiftformer_{variant}.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
