# Semantic FPN 40k on ADE20K with SwiftFormer-S: the L1 recipe, S backbone.
_base_ = './fpn_swiftformer-l1_8xb4-40k_ade20k-512x512.py'

variant = 's'
model = dict(
    backbone=dict(
        arch=variant,
        init_cfg=dict(checkpoint=f'checkpoints/swiftformer_{variant}.pth')),
    neck=dict(in_channels=[48, 64, 168, 224]))
