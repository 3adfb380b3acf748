"""A hook that shows the backbone's features (or its additive attention)
forming during training."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmswift.compat import apply_all
from mmswift.registry import HOOKS
from mmswift.visualization.attention import AttentionRecorder
from mmswift.visualization.extractor import crop_to_image

SHOWS = ('features', 'attention')


@HOOKS.register_module()
class FeatureMapVisHook(Hook):
    """Every ``interval`` iterations, draw one backbone stage of a fixed
    validation image over that image and send it to the visualizer's
    backends (``vis_data/vis_image/`` for the default local backend,
    TensorBoard or W&B when configured), named ``stage{k}_featmap``.

    Args:
        interval: iterations between drawings.
        stage: backbone stage, 0 = stride 4.
        image_index: which validation sample to draw.
        reduction: ``'squeeze_mean'`` or ``'select_max'`` (draw_featmap's).
        alpha: heatmap opacity.
        show: ``'features'`` (default): the stage's output features, named
            ``stage{k}_featmap``; ``'attention'``: the magnitude of the token
            weights of the stage's additive attention (its last block, see
            :mod:`mmswift.visualization.attention`), named
            ``stage{k}_attention``. A backbone with ``attn_norm='softmax'``
            has constant weights: the hook logs that once and draws nothing.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 100, stage: int = 0, image_index: int = 0,
                 reduction: str = 'squeeze_mean', alpha: float = 0.5,
                 show: str = 'features') -> None:
        if show not in SHOWS:
            raise ValueError(f'FeatureMapVisHook: show={show!r}; expected one of {SHOWS}')
        apply_all()  # the Runner is built from an mmswift config: see mmswift.compat
        self.show = show
        self._told_constant = False
        self.interval = interval
        self.stage = stage
        self.image_index = image_index
        self.reduction = reduction
        self.alpha = alpha
        self._sample: Optional[dict] = None

    def _fixed_sample(self, runner) -> dict:
        if self._sample is None:
            dataset = runner.val_loop.dataloader.dataset
            self._sample = dataset[self.image_index % len(dataset)]
        return self._sample

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        if runner.val_loop is None:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        sample = self._fixed_sample(runner)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                data = model.data_preprocessor(
                    dict(inputs=[sample['inputs']], data_samples=[sample['data_samples']]), False)
                if self.show == 'attention':
                    with AttentionRecorder(model, [self.stage]) as rec:
                        model.backbone(data['inputs'])
                    attn = rec.results(data['inputs'].shape[-1])[0]
                else:
                    feat = model.backbone(data['inputs'])[self.stage][0]
        finally:
            model.train(was_training)
        h, w = data['data_samples'][0].img_shape
        image = sample['inputs'][:, :h, :w].permute(1, 2, 0).numpy()[..., ::-1].copy()  # BGR->RGB
        if self.show == 'attention':
            if attn.constant:
                if not self._told_constant:
                    runner.logger.info(f'FeatureMapVisHook: {attn.message}')
                    self._told_constant = True
                return
            weights, _ = crop_to_image(attn.weights, data['inputs'].shape[-1], (h, w))
            drawn = runner.visualizer.draw_featmap(
                weights.abs(), image, channel_reduction=None, alpha=self.alpha,
                resize_shape=(h, w))
            runner.visualizer.add_image(f'stage{self.stage + 1}_attention', drawn,
                                        step=runner.iter + 1)
            return
        feat, _ = crop_to_image(feat, data['inputs'].shape[-1], (h, w))
        drawn = runner.visualizer.draw_featmap(
            feat, image, channel_reduction=self.reduction, alpha=self.alpha,
            resize_shape=(h, w))
        runner.visualizer.add_image(f'stage{self.stage + 1}_featmap', drawn,
                                    step=runner.iter + 1)
